import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { expireOrders, runOrderMaintenance } from "../../src/orders/order-expiry.job";
import { OrderSweepRepo } from "../../src/orders/order-sweep.repo";
import { OrdersRepo } from "../../src/orders/orders.repo";
import { OrdersService } from "../../src/orders/orders.service";
import { DurableObjectStock } from "../../src/products/product-stock.client";
import type { AppError } from "../../src/shared/errors";
import { api, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import {
  backdateExpiry,
  balanceOf,
  cancelOrder,
  createUserCoupon,
  orderRow,
  payOrder,
  placedOrderId,
  userCouponRow,
} from "../support/orders";

const stock = new DurableObjectStock(env.PRODUCT_STOCK);
const ttl = loadConfig(env).orderPaymentTtlMs;
const later = () => Date.now() + ttl + 1_000;
const uses = (userId: number) =>
  env.DB.prepare("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'").bind(userId).first<number>("n");

describe("cancel races", () => {
  it("two concurrent cancels: both answer the CANCELLED order, stock and coupon come back once", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const uc = await createUserCoupon(userId, await createCoupon());
    const orderId = await placedOrderId(userId, [[p, 3]], uc);
    const [a, b] = await Promise.all([cancelOrder(userId, orderId), cancelOrder(userId, orderId)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.body.data.status, b.body.data.status]).toEqual(["CANCELLED", "CANCELLED"]);
    expect(await userCouponRow(uc)).toEqual({ used_at: null, order_id: null });
    await assertStockConservation([p], 5);
  });

  it("cancel against expiry, for 12 orders: exactly one wins each, and both outcomes occur", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 50);
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await placedOrderId(userId, [[p, 1]]));
    // Deterministic interleaving: the even orders are cancelled between the sweep's pick and its flip.
    class CancelInTheWindow extends OrderSweepRepo {
      protected override async pick(sql: string, bound: number, limit: number) {
        const picked = await super.pick(sql, bound, limit);
        if (sql.includes("NOT_PAID"))
          for (const id of ids.filter((_, i) => i % 2 === 0)) expect((await cancelOrder(userId, id)).status).toBe(200);
        return picked;
      }
    }
    expect(await expireOrders({ sweep: new CancelInTheWindow(env.DB), stock }, later())).toBe(6);
    const statuses = await Promise.all(ids.map(async (id) => (await orderRow(id))!.status));
    expect(statuses).toEqual(ids.map((_, i) => (i % 2 === 0 ? "CANCELLED" : "EXPIRED")));
    // A cancel after the expiry won is refused.
    expect(errorCode(await cancelOrder(userId, ids[1]!))).toBe("ORDER_NOT_CANCELLABLE");
    await assertStockConservation([p], 50);
  });

  it("a losing cancel never gives back a coupon another order has re-used", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const uc = await createUserCoupon(userId, await createCoupon());
    const first = await placedOrderId(userId, [[p, 1]], uc);
    await backdateExpiry(first);
    let second = 0;
    // The cancel reads the order as NOT_PAID; before it flips, expiry wins and a new order re-uses the coupon.
    class ExpiresMeanwhile extends OrdersRepo {
      override async findItems(orderId: number) {
        const items = await super.findItems(orderId);
        if (second === 0) {
          expect(await expireOrders({ sweep: new OrderSweepRepo(env.DB), stock }, Date.now())).toBe(1);
          second = await placedOrderId(userId, [[p, 2]], uc);
        }
        return items;
      }
    }
    const svc = new OrdersService({ repo: new ExpiresMeanwhile(env.DB), stock, clock: () => Date.now() - 2_000, paymentTtlMs: ttl });
    const err = await svc.cancelOrder(first, userId).catch((e: unknown) => e);
    expect((err as AppError).code).toBe("ORDER_NOT_CANCELLABLE");
    expect(await userCouponRow(uc)).toEqual({ used_at: expect.any(Number), order_id: second });
    expect((await orderRow(second))!.status).toBe("NOT_PAID");
    await assertStockConservation([p], 5);
    expect((await cancelOrder(userId, second)).status).toBe(200); // (leaves no NOT_PAID order for the sweeps below)
  });
});

describe("overlapping cron runs", () => {
  it("an expiry round that lost its order to an overlapping run never gives back the coupon a new order re-used", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const uc = await createUserCoupon(userId, await createCoupon());
    const first = await placedOrderId(userId, [[p, 1]], uc);
    await backdateExpiry(first);
    let second = 0;
    // Between this round's pick and its batch, another run expires the order (coupon back) and a new order re-uses the coupon.
    class OverlappedRun extends OrderSweepRepo {
      protected override async pick(sql: string, bound: number, limit: number) {
        const picked = await super.pick(sql, bound, limit);
        if (sql.includes("NOT_PAID") && second === 0) {
          expect(await expireOrders({ sweep: new OrderSweepRepo(env.DB), stock }, Date.now())).toBe(1);
          second = await placedOrderId(userId, [[p, 2]], uc);
        }
        return picked;
      }
    }
    expect(await expireOrders({ sweep: new OverlappedRun(env.DB), stock }, Date.now())).toBe(0);
    expect(await userCouponRow(uc)).toEqual({ used_at: expect.any(Number), order_id: second });
    expect((await orderRow(second))!.status).toBe("NOT_PAID");
    expect((await cancelOrder(userId, second)).status).toBe(200); // (leaves no NOT_PAID order for the sweeps below)
    await assertStockConservation([p], 5);
  });

  it("two maintenance runs at once expire each of 30 orders once, with stock and coupons back", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 60);
    const ucs: number[] = [];
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) {
      const uc = i < 10 ? await createUserCoupon(userId, await createCoupon()) : undefined;
      if (uc) ucs.push(uc);
      ids.push(await placedOrderId(userId, [[p, 2]], uc));
    }
    const t = later();
    const sweep = new OrderSweepRepo(env.DB);
    const [a, b] = await Promise.all([runOrderMaintenance({ sweep, stock }, t), runOrderMaintenance({ sweep, stock }, t)]);
    expect(a.expired + b.expired).toBe(30);
    for (const id of ids) expect(await orderRow(id)).toMatchObject({ status: "EXPIRED", closed_at: expect.any(Number) });
    for (const uc of ucs) expect(await userCouponRow(uc)).toEqual({ used_at: null, order_id: null });
    await assertStockConservation([p], 60);
  });
});

describe("payment against expiry", () => {
  it("for 12 orders racing the sweep: exactly one wins each, and both outcomes occur", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(1_000, 40);
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await placedOrderId(userId, [[p, 1]]));
    // The odd orders are paid (at the real time, so still payable) between the sweep's pick and its flip.
    class PayInTheWindow extends OrderSweepRepo {
      protected override async pick(sql: string, bound: number, limit: number) {
        const picked = await super.pick(sql, bound, limit);
        if (sql.includes("NOT_PAID")) {
          const paid = await Promise.all(ids.filter((_, i) => i % 2 === 1).map((id) => payOrder(userId, id)));
          expect(paid.map((r) => r.status)).toEqual(Array(6).fill(200));
        }
        return picked;
      }
    }
    expect(await expireOrders({ sweep: new PayInTheWindow(env.DB), stock }, later())).toBe(6);
    const statuses = await Promise.all(ids.map(async (id) => (await orderRow(id))!.status));
    expect(statuses).toEqual(ids.map((_, i) => (i % 2 === 1 ? "PAID" : "EXPIRED")));
    // A payment after the expiry won is refused; the balance paid exactly the six.
    expect(errorCode(await payOrder(userId, ids[0]!))).toBe("ORDER_NOT_PAYABLE");
    expect(await balanceOf(userId)).toBe(1_000_000 - 6_000);
    expect(await uses(userId)).toBe(6);
    await assertStockConservation([p], 40);
  });
});

describe("one short balance", () => {
  it("of 6 orders racing for a balance that covers 2, exactly 2 are paid and it never goes below 0", async () => {
    const userId = await createUser(2_500);
    const p = await createProduct(1_000, 10);
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) ids.push(await placedOrderId(userId, [[p, 1]]));
    const results = await Promise.all(ids.map((id) => payOrder(userId, id)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(2);
    for (const r of results.filter((x) => x.status !== 200)) expect(errorCode(r)).toBe("INSUFFICIENT_BALANCE");
    expect(await balanceOf(userId)).toBe(500);
    expect(await uses(userId)).toBe(2);
    await assertStockConservation([p], 10);
  });
});

describe("a coupon that expires between placement and payment", () => {
  it("the order keeps the discount it was placed with and can be paid; a cancel gives back a coupon that is now EXPIRED", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(1_000, 5);
    const couponId = await createCoupon({ discountType: "AMOUNT", discountValue: 300 });
    const paidUc = await createUserCoupon(userId, couponId);
    const order = await placedOrderId(userId, [[p, 1]], paidUc);
    await env.DB.prepare("UPDATE user_coupons SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 1, paidUc)
      .run();
    const paid = await payOrder(userId, order);
    expect(paid.status).toBe(200);
    expect(paid.body.data.paidAmount).toBe(700);
    expect(await userCouponRow(paidUc)).toEqual({ used_at: expect.any(Number), order_id: order });

    const other = await createUser(10_000);
    const uc2 = await createUserCoupon(other, couponId);
    const o2 = await placedOrderId(other, [[p, 1]], uc2);
    await env.DB.prepare("UPDATE user_coupons SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 1, uc2)
      .run();
    expect((await cancelOrder(other, o2)).status).toBe(200);
    const list = await api.get(`/api/v1/coupons?userId=${other}`);
    expect(list.body.data.coupons[0]).toMatchObject({ userCouponId: uc2, usedAt: null, status: "EXPIRED" });
    await assertStockConservation([p], 5);
  });
});
