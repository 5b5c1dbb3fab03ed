import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { OrdersRepo } from "../../src/orders/orders.repo";
import { OrdersService } from "../../src/orders/orders.service";
import { DurableObjectStock, type StockPort } from "../../src/products/product-stock.client";
import { AppError } from "../../src/shared/errors";
import { createCoupon, createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { createUserCoupon, stockStub, userCouponRow } from "../support/orders";

const ttl = loadConfig(env).orderPaymentTtlMs;
const realStock = () => new DurableObjectStock(env.PRODUCT_STOCK);
/** Work the service defers past its answer (ctx.waitUntil in the app); awaited by `settled()`. */
const deferred: Promise<unknown>[] = [];
const settled = () => Promise.all(deferred.splice(0));
const service = (repo: OrdersRepo, stock: StockPort = realStock()) =>
  new OrdersService({
    repo,
    stock,
    clock: () => Date.now(),
    paymentTtlMs: ttl,
    markSettledLater: (orderId) => deferred.push(repo.markSettled(orderId, Date.now())),
  });

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
    // The coupon gets used elsewhere after the first batch checked it.
    class StaleCouponRepo extends OrdersRepo {
      override async recordAttempt(...args: Parameters<OrdersRepo["recordAttempt"]>) {
        const attempt = await super.recordAttempt(...args);
        await env.DB.prepare("UPDATE user_coupons SET used_at = ?, order_id = 424242 WHERE id = ?").bind(Date.now(), uc).run();
        return attempt;
      }
    }
    const err = await placeExpectingFailure(service(new StaleCouponRepo(env.DB)), {
      userId,
      userCouponId: uc,
      orderProducts: [
        { productId: a, quantity: 2 },
        { productId: b, quantity: 3 },
      ],
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
      override async commitPlacement(): Promise<{ ok: true }> {
        throw new Error("D1_ERROR: storage unavailable");
      }
    }
    const err = await placeExpectingFailure(service(new BrokenCommitRepo(env.DB)), {
      userId,
      orderProducts: [{ productId: p, quantity: 4 }],
    });
    expect(err.message).toContain("storage unavailable");
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED" });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    await assertStockConservation([p], 5);
  });

  it("a stock DO that throws on the second product: 503, and the first product's units come back", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 5);
    const b = await createProduct(100, 5);
    const real = realStock();
    const flaky: StockPort = Object.assign(Object.create(real), {
      reserve: (...args: Parameters<StockPort["reserve"]>) =>
        args[0].productId === b ? Promise.reject(new Error("DO unreachable")) : real.reserve(...args),
    });
    const err = await placeExpectingFailure(service(new OrdersRepo(env.DB), flaky), {
      userId,
      orderProducts: [
        { productId: b, quantity: 1 },
        { productId: a, quantity: 2 },
      ],
    });
    expect((err as AppError).code).toBe("SERVICE_UNAVAILABLE");
    await settled();
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED", closed_at: expect.any(Number) });
    await assertStockConservation([a, b], 5);
  });

  it("stock shards that can neither cover a line nor prove the product sold out (SHARDS_BUSY): 503 with Retry-After, the other line released", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 5);
    const b = await createProduct(100, 5);
    const real = realStock();
    const busy: StockPort = Object.assign(Object.create(real), {
      reserve: (...args: Parameters<StockPort["reserve"]>) =>
        args[0].productId === b ? Promise.resolve({ ok: false, code: "SHARDS_BUSY", available: 0 }) : real.reserve(...args),
    });
    const err = await placeExpectingFailure(service(new OrdersRepo(env.DB), busy), {
      userId,
      orderProducts: [
        { productId: a, quantity: 2 },
        { productId: b, quantity: 1 },
      ],
    });
    expect(err).toMatchObject({ code: "SERVICE_UNAVAILABLE", headers: { "Retry-After": "1" } });
    await settled();
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED", closed_at: expect.any(Number) });
    await assertStockConservation([a, b], 5);
  });

  it("a reserve applied in the object whose call then throws is released by the compensation", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const real = realStock();
    const appliedThenLost: StockPort = Object.assign(Object.create(real), {
      reserve: async (...args: Parameters<StockPort["reserve"]>) => {
        const r = await real.reserve(...args);
        expect(r.ok).toBe(true);
        throw new Error("Network connection lost");
      },
    });
    const err = await placeExpectingFailure(service(new OrdersRepo(env.DB), appliedThenLost), {
      userId,
      orderProducts: [{ productId: p, quantity: 3 }],
    });
    expect((err as AppError).status).toBe(503);
    await settled();
    expect(await lastOrderOf(userId)).toMatchObject({ status: "FAILED", closed_at: expect.any(Number) });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    await assertStockConservation([p], 5);
  });

  it("a commit batch that lands but answers with an error: the order is placed, read back, with its stock", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    class LostAnswerRepo extends OrdersRepo {
      override async commitPlacement(...args: Parameters<OrdersRepo["commitPlacement"]>): ReturnType<OrdersRepo["commitPlacement"]> {
        await super.commitPlacement(...args);
        throw new Error("D1_ERROR: Network connection lost");
      }
    }
    const placed = await service(new LostAnswerRepo(env.DB)).placeOrder({ userId, orderProducts: [{ productId: p, quantity: 2 }] });
    expect(placed).toMatchObject({ status: "NOT_PAID", totalAmount: 200 });
    expect(await lastOrderOf(userId)).toMatchObject({ id: placed.orderId, status: "NOT_PAID" });
    expect(await stockStub(p).snapshot(p)).toMatchObject({ available: 3, confirmed: 2 });
    await assertStockConservation([p], 5);
  });
});
