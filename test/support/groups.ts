import { env } from "cloudflare:workers";
import { groupCommitter } from "../../src/shared/group-commit";
import { d1CostOf, d1GroupsOf } from "../../src/shared/hops";
import type { ApiResponse } from "./http";

/**
 * Staging for group-commit tests (src/shared/group-commit.ts), without timing: `lead` is
 * sent first and its batch is held in flight; every request of `group` is then started and
 * waits in the queue; on release they all go out together in the next batch. So the test
 * knows exactly which requests shared a batch. Requests must come from one app built with
 * `shareWriteBatches: true` (test/support/secure-app.ts testApp) over `binding`.
 */
export async function inOneBatch<T>(opts: { kind: string; lead: () => Promise<T>; group: (() => Promise<T>)[]; binding?: object }) {
  const q = groupCommitter(opts.binding ?? env.DB, opts.kind);
  const before = { ...q.stats };
  const release = q.hold();
  const lead = opts.lead();
  await q.whenHeld();
  const group = opts.group.map((start) => start());
  await q.whenQueued(opts.group.length);
  release();
  const out = { lead: await lead, group: await Promise.all(group) };
  // `split`: batches D1 refused with a constraint error and that went out again request by request (a statement that aborts).
  return {
    ...out,
    batches: q.stats.batches - before.batches,
    requests: q.stats.requests - before.requests,
    split: q.stats.split - before.split,
  };
}

/** What the meters of these answers say D1 did: write transactions, and the shared batches each rode in. */
export function meteredWrites(responses: ApiResponse[]) {
  const timings = responses.map((r) => r.headers.get("server-timing"));
  const groups = timings.flatMap((t) => d1GroupsOf(t));
  return {
    writeTx: timings.reduce((n, t) => n + d1CostOf(t).writeTx, 0),
    sent: groups.filter((g) => g.sent).length,
    sizes: groups.map((g) => g.size),
  };
}

/**
 * The test file's D1, except that a session batch for which `fails(statements, n)` is true (n: 1-based count of
 * session batches sent) fails with a lost connection: before it is applied, or, with `applied`, after (its answer lost).
 */
export function failingSessionBatches(fails: (statements: D1PreparedStatement[], n: number) => boolean, applied: boolean): D1Database {
  let sent = 0;
  const db = {
    prepare: (q: string) => env.DB.prepare(q),
    batch: (s: D1PreparedStatement[]) => env.DB.batch(s),
    withSession: (arg: string) => {
      const session = env.DB.withSession(arg);
      return {
        prepare: (q: string) => session.prepare(q),
        getBookmark: () => session.getBookmark(),
        batch: async (statements: D1PreparedStatement[]) => {
          if (!fails(statements, ++sent)) return session.batch(statements);
          if (applied) await session.batch(statements);
          throw new Error("D1_ERROR: Network connection lost");
        },
      };
    },
  };
  return db as unknown as D1Database;
}
