import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";

/**
 * The query builder over D1. Built per request (over the request's metered binding),
 * so it is built without the relational schema: nothing uses `db.query`, and
 * extracting the relations cost about 1% of a coupon storm's CPU (profile, docs/PERFORMANCE.md).
 */
export type Db = DrizzleD1Database;

export function createDb(d1: D1Database): Db {
  return drizzle(d1);
}

/**
 * A D1 session seen as the binding type, so repos and drizzle take it unchanged
 * (they only call `prepare` and `batch`; a session has no `exec`).
 */
export function sessionAsDatabase(session: D1DatabaseSession): D1Database {
  const outside = (what: string) => () => {
    throw new Error(`D1 ${what} is not available inside a session`);
  };
  return {
    prepare: (query: string) => session.prepare(query),
    batch: <T = unknown>(statements: D1PreparedStatement[]) => session.batch<T>(statements),
    exec: outside("exec"),
    dump: outside("dump"),
    withSession: outside("withSession"),
  } as unknown as D1Database;
}

/**
 * The binding every query of which runs on the primary, for work that must see the
 * latest commit: the Durable Objects' projections and reads, the crons, the queue
 * consumer's de-duplication, and a request's read-back after an ambiguous commit.
 *
 * It is the bare binding on purpose. A `withSession("first-primary")` session pins only
 * its FIRST query to the primary; later queries may go to any replica at least as new
 * as the session's bookmark, which misses every other writer's later commits (a payment
 * whose answer was lost, an order another request just flipped). Without the Sessions
 * API, Cloudflare runs every query on the primary ("otherwise all queries will continue
 * to be executed only by the primary database", D1 read replication docs).
 */
export function primaryD1(db: D1Database): D1Database {
  return db;
}

/**
 * D1 reports a failed CHECK as an Error whose message (or cause's message)
 * names the constraint; this finds it so a batch abort maps to a business error.
 */
export function constraintFailed(err: unknown, name: string): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof Error && e.message.includes(name)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
