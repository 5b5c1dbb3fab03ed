import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { seedSettledHistory } from "../support/settled-history";
import { dueOrders, runJob } from "../support/jobs";
import { seedFailedAttempts, userCouponRow } from "../support/orders";

/** Rows a job may read more with 5,000 settled orders beside its work than without (none, ideally). */
const SLACK = 3;

describe("D1 rows the order jobs read grow with their work, not with the shop's history", () => {
  it("order maintenance reads the same rows for the same work with 5,000 settled orders, coupons and items beside it", async () => {
    const first = await dueOrders();
    const before = await runJob("* * * * *", "order-maintenance");
    expect(before.result).toMatchObject({ expired: 1, failed: 1, settled: 1 });
    expect(await userCouponRow(first.coupon)).toEqual({ used_at: null, order_id: null });

    await seedSettledHistory({ n: 5_000, tag: "maintenance", now: Date.now() });
    const second = await dueOrders();
    const after = await runJob("* * * * *", "order-maintenance");
    expect(after.result).toEqual(before.result);
    expect(await userCouponRow(second.coupon)).toEqual({ used_at: null, order_id: null });
    expect(after.d1.rowsRead - before.d1.rowsRead).toBeLessThanOrEqual(SLACK);
    expect(after.d1.rowsRead).toBeLessThan(100);
  });

  it("the failed-attempt purge reads the attempts it deletes, not the 1,250 younger FAILED ones nor the paid history", async () => {
    const ordersOf = (userId: number) =>
      env.DB.prepare("SELECT count(*) AS n FROM orders WHERE user_id = ?").bind(userId).first<number>("n");
    const first = await seedFailedAttempts(3);
    const before = await runJob("*/10 * * * *", "failed-orders-purge");
    expect(await ordersOf(first)).toBe(0);

    await seedSettledHistory({ n: 5_000, tag: "purge", now: Date.now() });
    const second = await seedFailedAttempts(3);
    const after = await runJob("*/10 * * * *", "failed-orders-purge");
    expect(await ordersOf(second)).toBe(0);
    expect(after.result).toEqual(before.result);
    expect(after.d1.rowsRead - before.d1.rowsRead).toBeLessThanOrEqual(SLACK);
    expect(after.d1.rowsRead).toBeLessThan(50);
    // Nothing due: a few rows, whatever the table holds.
    expect((await runJob("*/10 * * * *", "failed-orders-purge")).d1.rowsRead).toBeLessThan(5);
  });
});
