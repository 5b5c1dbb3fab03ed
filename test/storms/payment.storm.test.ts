import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { expireOrders } from "../../src/orders/order-expiry.job";
import { createServices } from "../../src/services";
import { createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { balanceOf, cancelOrder, createUserCoupon, orderRow, payOrder, placedOrderId, userCouponRow } from "../support/orders";

const count = (sql: string, ...binds: unknown[]) =>
  env.DB.prepare(sql)
    .bind(...binds)
    .first<number>("n");

describe("payment storms", () => {
  it("lets one of 10 parallel payments win: one PAID, one deduction, one history row, one outbox row", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(1_500, 10);
    const orderId = await placedOrderId(userId, [[p, 2]]);
    const results = await Promise.all(Array.from({ length: 10 }, () => payOrder(userId, orderId)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    for (const r of results.filter((r) => r.status !== 200)) expect(errorCode(r)).toBe("ORDER_NOT_PAYABLE");
    expect(await balanceOf(userId)).toBe(7_000);
    expect((await orderRow(orderId))!.status).toBe("PAID");
    expect(await count("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'", userId)).toBe(1);
    expect(await count("SELECT count(*) AS n FROM outbox WHERE aggregate_id = ?", String(orderId))).toBe(1);
    await assertStockConservation([p], 10);
  });

  it("lets exactly one of payment and expiry win for each of 15 racing orders", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(1_000, 100);
    const s = createServices(env, loadConfig(env));
    const orders: { orderId: number; uc: number }[] = [];
    for (let i = 0; i < 15; i++) {
      const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 100 }));
      orders.push({ orderId: await placedOrderId(userId, [[p, 2]], uc), uc });
    }
    // The job runs as if the deadline had passed, while payments run at the real time: both preconditions hold.
    // Deterministic ends, free middle: the sweep starts once the first three payments have answered (those are
    // PAID), the last three pay only after it finished (those are EXPIRED), the nine in between race it.
    const later = Date.now() + loadConfig(env).orderPaymentTtlMs + 1_000;
    let answered = 0;
    let firstThree!: () => void;
    const reached = new Promise<void>((r) => (firstThree = r));
    const racing = Promise.all(
      orders.slice(0, 12).map(async (o) => {
        const r = await payOrder(userId, o.orderId);
        if (++answered === 3) firstThree();
        return r;
      }),
    );
    await reached;
    await expireOrders({ sweep: s.orderSweep, stock: s.stock }, later);
    const pays = [...(await racing), ...(await Promise.all(orders.slice(12).map((o) => payOrder(userId, o.orderId))))];
    let paid = 0;
    for (const [i, o] of orders.entries()) {
      const status = (await orderRow(o.orderId))!.status;
      expect(["PAID", "EXPIRED"]).toContain(status);
      expect(pays[i]!.status).toBe(status === "PAID" ? 200 : 409);
      // The coupon stays with a paid order and comes back from an expired one.
      expect(await userCouponRow(o.uc)).toEqual(
        status === "PAID" ? { used_at: expect.any(Number), order_id: o.orderId } : { used_at: null, order_id: null },
      );
      if (status === "PAID") paid++;
    }
    expect(paid, "both outcomes occurred").toBeGreaterThanOrEqual(3);
    expect(paid, "both outcomes occurred").toBeLessThanOrEqual(12);
    expect(await balanceOf(userId)).toBe(1_000_000 - paid * 1_900);
    expect(await count("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'", userId)).toBe(paid);
    await assertStockConservation([p], 100);
  });

  it("lets exactly one of cancel and payment win for each of 15 racing orders", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(1_000, 100);
    const couponId = await createCoupon({ discountType: "RATE", discountValue: 10 });
    const uc = await createUserCoupon(userId, couponId);
    const orderIds: number[] = [await placedOrderId(userId, [[p, 1]], uc)];
    for (let i = 1; i < 15; i++) orderIds.push(await placedOrderId(userId, [[p, 1]]));
    // Alternate who starts first so both outcomes occur.
    const raced = await Promise.all(
      orderIds.map(async (id, i) => {
        if (i % 2 === 0) return Promise.all([cancelOrder(userId, id), payOrder(userId, id)]);
        const [pay, cancel] = await Promise.all([payOrder(userId, id), cancelOrder(userId, id)]);
        return [cancel, pay] as const;
      }),
    );
    let paid = 0;
    for (const [i, [cancel, pay]] of raced.entries()) {
      const status = (await orderRow(orderIds[i]!))!.status;
      if (status === "PAID") {
        paid++;
        expect(pay.status).toBe(200);
        expect(errorCode(cancel)).toBe("ORDER_NOT_CANCELLABLE");
      } else {
        expect(status).toBe("CANCELLED");
        expect(cancel.status).toBe(200);
        expect(errorCode(pay)).toBe("ORDER_NOT_PAYABLE");
      }
    }
    const firstPaid = (await orderRow(orderIds[0]!))!.status === "PAID";
    expect(await userCouponRow(uc)).toEqual(
      firstPaid ? { used_at: expect.any(Number), order_id: orderIds[0] } : { used_at: null, order_id: null },
    );
    const spent = raced.reduce((sum, [, pay]) => sum + (pay.status === 200 ? pay.body.data.paidAmount : 0), 0);
    expect(await balanceOf(userId)).toBe(1_000_000 - spent);
    expect(await count("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'", userId)).toBe(paid);
    await assertStockConservation([p], 100);
  });
});
