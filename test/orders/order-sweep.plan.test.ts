import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { dueOrders, runJob } from "../support/jobs";
import { historyWalks, planOf, statementLike, statementsOf } from "../support/plans";

/** Query plans are deterministic costs: pinned here, not timed. */
const plan = async (sql: string, ...binds: unknown[]) =>
  (
    await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...binds)
      .all<{ detail: string }>()
  ).results.map((r) => r.detail);

describe("query plans of the order sweeps", () => {
  it("reads unsettled orders through the partial index orders_unsettled_idx, never the closed history", async () => {
    // The sweep's own statement (src/orders/order-sweep.repo.ts listUnsettled), inner pick.
    const steps = await plan(
      `SELECT id, status, user_id, user_coupon_id FROM orders INDEXED BY orders_unsettled_idx
       WHERE status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND closed_at IS NULL AND settle_after <= ?1 AND updated_at < ?2
       ORDER BY settle_after, id LIMIT ?3`,
      0,
      0,
      10,
    );
    expect(steps.join(" | ")).toMatch(/SEARCH orders USING INDEX orders_unsettled_idx \(settle_after<\?\)/);
    expect(steps.join(" | ")).not.toMatch(/SCAN orders|TEMP B-TREE/);
  });

  it("picks expirable orders by the (status, expires_at) index", async () => {
    const steps = await plan("SELECT id FROM orders WHERE status = 'NOT_PAID' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2", 0, 10);
    expect(steps.join(" | ")).toMatch(/SEARCH orders USING (COVERING )?INDEX orders_status_expires_idx \(status=\? AND expires_at<\?\)/);
  });
});

describe("query plans of the statements the order maintenance sends", () => {
  it("reaches every order and coupon it moves by primary key, and reads no history table whole", async () => {
    await dueOrders();
    let result: unknown;
    const statements = await statementsOf(async () => (result = (await runJob("* * * * *", "order-maintenance")).result));
    expect(result).toMatchObject({ expired: 1, failed: 1, settled: 1 });
    // The dead-placement pick reads the PENDING rows: placements in flight (each is PENDING for the
    // moments between its first and last batch), never history. Every other statement reads no table whole.
    const pendingPick = statementLike(statements, /status = 'PENDING' AND created_at/);
    expect(await planOf(pendingPick)).toMatch(/SEARCH orders USING INDEX orders_status_expires_idx \(status=\?\)/);
    for (const sql of statements.filter((s) => s !== pendingPick))
      expect({ sql, walks: historyWalks(await planOf(sql)) }).toEqual({ sql, walks: [] });

    // The coupon give-back: through orders.user_coupon_id to user_coupons' key (user_coupons.order_id has no index).
    const giveBack = await planOf(statementLike(statements, /UPDATE user_coupons/));
    expect(giveBack).toMatch(/SEARCH user_coupons USING INTEGER PRIMARY KEY \(rowid=\?\)/);
    expect(giveBack).toMatch(/SEARCH orders USING INTEGER PRIMARY KEY \(rowid=\?\)/);
    // The flips: the picked ids by key, not every due (or every PENDING) order through the status index.
    expect(await planOf(statementLike(statements, /SET status = 'EXPIRED'/))).toMatch(
      /^SEARCH orders USING INTEGER PRIMARY KEY \(rowid=\?\)/,
    );
    expect(await planOf(statementLike(statements, /SET status = 'FAILED'/))).toMatch(
      /^SEARCH orders USING INTEGER PRIMARY KEY \(rowid=\?\)/,
    );
    // The settle sweep: the partial index of unsettled orders only.
    expect(await planOf(statementLike(statements, /orders_unsettled_idx/))).toMatch(
      /SEARCH orders USING INDEX orders_unsettled_idx \(settle_after<\?\)/,
    );
  });
});

describe("query plans of the failed-attempt purge", () => {
  it("picks attempts past their retention through orders_failed_idx, never every FAILED attempt", async () => {
    const statements = await statementsOf(() => runJob("*/10 * * * *", "failed-orders-purge"));
    expect(statements).toHaveLength(2);
    for (const sql of statements) {
      const plan = await planOf(sql);
      expect({ sql, walks: historyWalks(plan) }).toEqual({ sql, walks: [] });
      expect(plan).toMatch(/SEARCH orders USING INDEX orders_failed_idx \(updated_at<\?\)/);
      expect(plan).not.toMatch(/TEMP B-TREE/);
    }
  });
});
