import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { OrdersRepo, type UserCouponRow } from "../../src/orders/orders.repo";
import { OrdersService } from "../../src/orders/orders.service";
import type { ProductStock } from "../../src/products/product-stock.do";
import { DurableObjectStock, type StockPort } from "../../src/products/product-stock.client";
import { AppError } from "../../src/shared/errors";
import { createCoupon, createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { createUserCoupon, stockStub, userCouponRow } from "../support/orders";

const ttl = loadConfig(env).orderPaymentTtlMs;
const realStock = () => new DurableObjectStock(env.PRODUCT_STOCK);
const service = (repo: OrdersRepo, stock: StockPort = realStock()) => new OrdersService(repo, stock, () => Date.now(), ttl);

async function placeExpectingFailure(svc: OrdersService, input: Parameters<OrdersService["placeOrder"]>[0]) {
  const err = await svc.placeOrder(input).then(
    () => {
      throw new Error("placement unexpectedly succeeded");
    },
    (e: unknown) => e,
  );
  return err as Error;
}

async function lastOrderOf(userId: number) {
  return env.DB.prepare("SELECT id, status, closed_at FROM orders WHERE user_id = ? ORDER BY id DESC").bind(userId).first<any>();
}

describe("placement failures after reservation leave no reservation", () => {
  it("a coupon used by someone else between the check and the commit", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 5);
    const b = await createProduct(100, 5);
    const uc = await createUserCoupon(userId, await createCoupon());
    // The coupon gets used elsewhere after our check: the repo shows the stale, unused view.
    class StaleCouponRepo extends OrdersRepo {
      override async findUserCoupon(id: number): Promise<UserCouponRow | undefined> {
        const row = await super.findUserCoupon(id);
        await env.DB.prepare("UPDATE user_coupons SET used_at = ?, order_id = 424242 WHERE id = ?").bind(Date.now(), id).run();
        return row;
      }
    }
    const err = await placeExpectingFailure(service(new StaleCouponRepo(env.DB)), {
      userId,
      userCouponId: uc,
      orderProducts: [{ productId: a, quantity: 2 }, { productId: b, quantity: 3 }],
    });
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("COUPON_ALREADY_USED");
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED", closed_at: expect.any(Number) });
    expect(await userCouponRow(uc)).toMatchObject({ order_id: 424242 });
    expect(await stockStub(a).snapshot(a)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    await assertStockConservation([a, b], 5);
  });

  it("a D1 error in the commit batch", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    class BrokenCommitRepo extends OrdersRepo {
      override async commitPlacement(): Promise<{ ok: true } | { ok: false }> {
        throw new Error("D1_ERROR: storage unavailable");
      }
    }
    const err = await placeExpectingFailure(service(new BrokenCommitRepo(env.DB)), { userId, orderProducts: [{ productId: p, quantity: 4 }] });
    expect(err.message).toContain("storage unavailable");
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED" });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    await assertStockConservation([p], 5);
  });

  it("a stock DO that throws on the second product", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 5);
    const b = await createProduct(100, 5);
    const real = realStock();
    const flaky: StockPort = Object.assign(Object.create(real), {
      reserve: (productId: number, orderId: number, quantity: number, now: number) =>
        productId === b ? Promise.reject(new Error("DO unreachable")) : real.reserve(productId, orderId, quantity, now),
    });
    const err = await placeExpectingFailure(service(new OrdersRepo(env.DB), flaky), {
      userId,
      orderProducts: [{ productId: b, quantity: 1 }, { productId: a, quantity: 2 }],
    });
    expect(err.message).toContain("DO unreachable");
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED", closed_at: expect.any(Number) });
    await assertStockConservation([a, b], 5);
  });

  it("a hold that timed out before it was confirmed", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const real = realStock();
    const slow: StockPort = Object.assign(Object.create(real), {
      confirm: async (productId: number, orderId: number) => {
        // The saga stalled longer than the hold lives.
        await runInDurableObject(stockStub(productId), (_o: ProductStock, state) => {
          state.storage.sql.exec("UPDATE reservations SET expires_at = ? WHERE order_id = ?", Date.now() - 1, orderId);
        });
        return real.confirm(productId, orderId);
      },
    });
    const err = await placeExpectingFailure(service(new OrdersRepo(env.DB), slow), { userId, orderProducts: [{ productId: p, quantity: 5 }] });
    expect((err as AppError).code).toBe("SERVICE_UNAVAILABLE");
    expect((err as AppError).status).toBe(503);
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED" });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    await assertStockConservation([p], 5);
  });
});
