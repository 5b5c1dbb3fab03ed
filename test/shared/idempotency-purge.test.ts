import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SubrequestBudget } from "../../src/shared/budget";
import { IdempotencyRepo } from "../../src/shared/idempotency.repo";
import { IDEMPOTENCY_PURGE_BATCH, purgeIdempotencyKeys } from "../../src/shared/idempotency.job";
import { seedSettledHistory } from "../support/settled-history";
import { runJob } from "../support/jobs";
import { historyWalks, planOf, statementsOf } from "../support/plans";

/** `n` keys of user `userId` that expired a minute ago (one INSERT ... SELECT). */
async function expiredKeys(userId: number, n: number) {
  await env.DB.prepare(
    `WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
     INSERT INTO idempotency_keys (user_id, key, scope, request_hash, status_code, response_body, created_at, expires_at)
     SELECT ?2, 'k-' || x, 'POST /x', 'h', 200, '{}', ?3, ?3 FROM seq`,
  )
    .bind(n, userId, Date.now() - 60_000)
    .run();
}
const keysOf = (userId: number) =>
  env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys WHERE user_id = ?").bind(userId).first<number>("n");

describe("purge of expired idempotency keys", () => {
  it("keeps deleting while a round finds a full batch: 2.5 batches go in one run of three rounds, and the job says so", async () => {
    await expiredKeys(900_001, IDEMPOTENCY_PURGE_BATCH * 2.5);
    const { result } = await runJob("* * * * *", "idempotency-purge");
    expect(result).toEqual({ keys: IDEMPOTENCY_PURGE_BATCH * 2.5, rounds: 3, stoppedOn: null });
    expect(await keysOf(900_001)).toBe(0);
  });

  it("stops at its subrequest budget with work left, and says so; the next run goes on", async () => {
    await expiredKeys(900_002, 5);
    const store = new IdempotencyRepo(env.DB);
    const now = Date.now();
    expect(await purgeIdempotencyKeys({ store, now, batchSize: 2, budget: new SubrequestBudget(2) })).toEqual({
      keys: 4,
      rounds: 2,
      stoppedOn: "subrequests",
    });
    expect(await purgeIdempotencyKeys({ store, now, batchSize: 2 })).toEqual({ keys: 1, rounds: 1, stoppedOn: null });
  });

  it("starts no round past its time budget", async () => {
    await expiredKeys(900_003, 5);
    let t = 0;
    const clock = () => (t += 3_000); // deadline 3,000 + 5,000: rounds at 6,000; at 9,000 the run stops
    const report = await purgeIdempotencyKeys({ store: new IdempotencyRepo(env.DB), now: Date.now(), batchSize: 2, clock });
    expect(report).toEqual({ keys: 2, rounds: 1, stoppedOn: "time" });
    await purgeIdempotencyKeys({ store: new IdempotencyRepo(env.DB), now: Date.now() });
  });

  it("reads the keys it deletes through idempotency_keys_expires_idx: 5,000 live keys beside them change nothing", async () => {
    await expiredKeys(900_004, 3);
    const before = await runJob("* * * * *", "idempotency-purge");
    await seedSettledHistory({ n: 5_000, tag: "keys", now: Date.now() });
    await expiredKeys(900_005, 3);
    const after = await runJob("* * * * *", "idempotency-purge");
    expect([before.result.keys, after.result.keys]).toEqual([3, 3]);
    expect(after.d1.rowsRead - before.d1.rowsRead).toBeLessThanOrEqual(3);
    const statements = await statementsOf(() => runJob("* * * * *", "idempotency-purge"));
    for (const sql of statements) {
      const plan = await planOf(sql);
      expect(historyWalks(plan)).toEqual([]);
      expect(plan).toMatch(/SEARCH idempotency_keys USING COVERING INDEX idempotency_keys_expires_idx \(expires_at<\?\)/);
    }
  });
});
