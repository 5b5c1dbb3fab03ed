import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { createUserCoupon, placeOrder, stockStub, userCouponRow } from "../support/orders";

const tally = (codes: (number | string)[]) => {
  const counts: Record<string, number> = {};
  for (const c of codes) counts[c] = (counts[c] ?? 0) + 1;
  return counts;
};

describe("order placement storms", () => {
  it("creates exactly 50 orders from 200 parallel single-item orders on stock 50", async () => {
    const userId = await createUser();
    const p = await createProduct(1_000, 50);
    const results = await Promise.all(Array.from({ length: 200 }, () => placeOrder(userId, [[p, 1]])));
    expect(tally(results.map((r) => r.status))).toEqual({ 201: 50, 409: 150 });
    for (const r of results.filter((r) => r.status === 409)) expect(errorCode(r)).toBe("INSUFFICIENT_STOCK");
    const ids = new Set(results.filter((r) => r.status === 201).map((r) => r.body.data.orderId));
    expect(ids.size).toBe(50);
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 0, held: 0, confirmed: 50 });
    await assertStockConservation([p], 50);
  });

  it("never deadlocks or strands units when orders take overlapping products in opposite orders", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 30);
    const b = await createProduct(100, 20); // the scarce one is reserved second, so failures must give `a` back
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        placeOrder(
          userId,
          i % 2 === 0
            ? [
                [a, 1],
                [b, 1],
              ]
            : [
                [b, 1],
                [a, 1],
              ],
        ),
      ),
    );
    expect(tally(results.map((r) => r.status))).toEqual({ 201: 20, 409: 20 });
    const failed = await env.DB.prepare(
      "SELECT count(*) AS n FROM orders WHERE user_id = ? AND status = 'FAILED' AND closed_at IS NOT NULL",
    )
      .bind(userId)
      .first<number>("n");
    expect(failed).toBe(20);
    expect(await stockStub(a).snapshot(a)).toMatchObject({ available: 10, held: 0, confirmed: 20 });
    expect(await stockStub(b).snapshot(b)).toMatchObject({ available: 0, held: 0, confirmed: 20 });
    await assertStockConservation([a, b], [30, 20]);
  });

  it("lets exactly one of 10 parallel orders use one user coupon", async () => {
    const userId = await createUser();
    const p = await createProduct(1_000, 100);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 300 }));
    const results = await Promise.all(Array.from({ length: 10 }, () => placeOrder(userId, [[p, 2]], uc)));
    const won = results.filter((r) => r.status === 201);
    expect(won).toHaveLength(1);
    expect(won[0]!.body.data).toMatchObject({ itemsAmount: 2_000, discountAmount: 300, totalAmount: 1_700 });
    for (const r of results.filter((r) => r.status !== 201)) {
      expect(r.status).toBe(409);
      expect(errorCode(r)).toBe("COUPON_ALREADY_USED");
    }
    expect(await userCouponRow(uc)).toMatchObject({ order_id: won[0]!.body.data.orderId });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 98, held: 0, confirmed: 2 });
    await assertStockConservation([p], 100);
  });
});
