import { env } from "cloudflare:workers";
import { recordStatements } from "../../src/shared/hops";

/**
 * Every SQL text the code prepares through a metered binding while `run` runs: a
 * plan test reads the statements a job really sends, not a copy that could drift.
 */
export async function statementsOf(run: () => Promise<unknown>): Promise<string[]> {
  const seen = new Set<string>();
  recordStatements((sql) => seen.add(sql));
  try {
    await run();
  } finally {
    recordStatements(undefined);
  }
  return [...seen];
}

/** The one statement of `statements` that matches `pattern` (a plan test names the statement it pins). */
export function statementLike(statements: string[], pattern: RegExp): string {
  const hits = statements.filter((s) => pattern.test(s));
  if (hits.length !== 1) throw new Error(`${hits.length} statements match ${pattern}:\n${statements.join("\n---\n")}`);
  return hits[0]!;
}

/**
 * EXPLAIN QUERY PLAN of `sql` as one line of steps joined by " | ", its parameters
 * bound to NULL (without ANALYZE statistics a plan does not depend on the values).
 */
export async function planOf(sql: string): Promise<string> {
  const numbered = [...sql.matchAll(/\?(\d+)/g)].map((m) => Number(m[1]));
  const anonymous = [...sql.matchAll(/\?(?!\d)/g)].length;
  const binds = new Array(Math.max(anonymous, ...numbered, 0)).fill(null);
  const res = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...binds)
    .all<{ detail: string }>();
  return res.results.map((r) => r.detail).join(" | ");
}

/** Tables that grow with the shop's history: a job must never read one whole. */
export const HISTORY_TABLES = [
  "orders",
  "order_items",
  "user_coupons",
  "point_history",
  "outbox",
  "event_deliveries",
  "dead_letters",
  "idempotency_keys",
  "users",
] as const;

/**
 * The steps of a plan that walk a history table whole: a SCAN, or an index SEARCH
 * constrained by `status` alone (every row ever in that status, e.g. all EXPIRED orders).
 */
export function historyWalks(plan: string): string[] {
  return plan.split(" | ").filter((step) => {
    const m = /^(?:SCAN|SEARCH) (\w+)/.exec(step);
    if (!m || !(HISTORY_TABLES as readonly string[]).includes(m[1]!)) return false;
    return step.startsWith("SCAN") || /\(status=\?\)$/.test(step);
  });
}
