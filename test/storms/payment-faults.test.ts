import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config";
import { settleUnsettledOrders, SETTLE_GRACE_MS } from "../../src/orders/order-expiry.job";
import { OrdersRepo } from "../../src/orders/orders.repo";
import { PaymentRepo } from "../../src/orders/payment.repo";
import { PaymentService } from "../../src/orders/payment.service";
import { DurableObjectStock, type StockPort } from "../../src/products/product-stock.client";
import { createServices } from "../../src/services";
import { createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { balanceOf, orderRow, placedOrderId, stockStub } from "../support/orders";
import { pointsState, testApp } from "../support/secure-app";

afterEach(() => vi.restoreAllMocks());

const real = new DurableObjectStock(env.PRODUCT_STOCK);
const orders = new OrdersRepo(env.DB);
const balance = (userId: number) => balanceOf(userId);
const service = (payments: PaymentRepo, stock: StockPort = real) =>
  new PaymentService({
    orders,
    payments,
    stock,
    clock: () => Date.now(),
    markSettledLater: (id) => void orders.markSettled(id, Date.now()),
    balanceOf: balance,
  });

/** The cron's settle sweep, run once its grace is over. */
async function cronSettles() {
  const s = createServices(env, loadConfig(env));
  return settleUnsettledOrders({ sweep: s.orderSweep, stock: real }, Date.now() + SETTLE_GRACE_MS + 1_000);
}

const uses = (userId: number) =>
  env.DB.prepare("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'").bind(userId).first<number>("n");

describe("a payment that committed is never answered as a failure", () => {
  it("a pay batch that commits but answers with an error: 200 PAID from the read-back, deducted once", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(1_000, 5);
    const orderId = await placedOrderId(userId, [[p, 2]]);
    class LostAnswer extends PaymentRepo {
      override async pay(...args: Parameters<PaymentRepo["pay"]>): ReturnType<PaymentRepo["pay"]> {
        await super.pay(...args);
        throw new Error("D1_ERROR: Network connection lost");
      }
    }
    const receipt = await service(new LostAnswer(env.DB)).payOrder(userId, orderId);
    expect(receipt).toEqual({ orderId, status: "PAID", paidAmount: 2_000, balance: 8_000 });
    expect(await balance(userId)).toBe(8_000);
    expect(await uses(userId)).toBe(1);
    await assertStockConservation([p], 5);
  });

  for (const [name, sell] of [
    ["throws before reaching the object", () => Promise.reject(new Error("Durable Object reset"))],
    ["refuses", async () => ({ ok: false as const, code: "NOT_RESERVED" as const })],
    [
      "is applied, then its answer is lost",
      (productId: number, shard: number, orderId: number) =>
        real.sell(productId, shard, orderId).then(() => Promise.reject(new Error("Network connection lost"))),
    ],
  ] as const) {
    it(`sell ${name} after the commit: still 200 PAID, and the cron sells that order, never releases it`, async () => {
      const userId = await createUser(10_000);
      const a = await createProduct(500, 5);
      const b = await createProduct(700, 5);
      const orderId = await placedOrderId(userId, [
        [a, 1],
        [b, 2],
      ]);
      const flaky: StockPort = Object.assign(Object.create(real), { sell });
      const receipt = await service(new PaymentRepo(env.DB), flaky).payOrder(userId, orderId);
      expect(receipt).toMatchObject({ orderId, status: "PAID", paidAmount: 1_900, balance: 8_100 });
      expect(await orderRow(orderId)).toMatchObject({ status: "PAID", closed_at: null });
      expect(await cronSettles()).toBe(1);
      expect((await orderRow(orderId))!.closed_at).not.toBeNull();
      // Released instead of sold, the units would be counted twice: available and sold.
      expect(await stockStub(a).snapshot(a)).toMatchObject({ available: 4, confirmed: 0, sold: 1 });
      expect(await stockStub(b).snapshot(b)).toMatchObject({ available: 3, confirmed: 0, sold: 2 });
      await assertStockConservation([a, b], 5);
    });
  }
});

describe("an Idempotency-Key survives a Worker that dies after the commit (payment and placement)", () => {
  const withKey = (key: string) => ({ "idempotency-key": key });

  it("payment: the batch commits, the Worker dies before answering; the retry after the lease replays 200, paid once", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(1_000, 5);
    const orderId = await placedOrderId(userId, [[p, 3]]);
    const t = Date.now();
    const pay = PaymentRepo.prototype.pay;
    vi.spyOn(PaymentRepo.prototype, "pay").mockImplementationOnce(async function (this: PaymentRepo, ...args) {
      await pay.apply(this, args);
      throw new Error("worker killed after commit");
    });
    // The read-back dies with it.
    vi.spyOn(OrdersRepo.prototype, "findOrder").mockRejectedValueOnce(new Error("worker killed"));
    const died = await testApp({}, { now: () => t }).post("/api/v1/points/use", { userId, orderId }, withKey("pay-crash"));
    expect(died.status).toBe(500);
    const retried = await testApp({}, { now: () => t + 121_000 }).post("/api/v1/points/use", { userId, orderId }, withKey("pay-crash"));
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    expect(retried.body.data).toEqual({ orderId, status: "PAID", paidAmount: 3_000, balance: 7_000 });
    expect(await pointsState(userId)).toMatchObject({ balance: 7_000 });
    expect(await uses(userId)).toBe(1);
  });

  it("placement: the commit lands, the Worker dies before answering; the retry after the lease replays 201, one order", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(1_000, 5);
    const t = Date.now();
    const commit = OrdersRepo.prototype.commitPlacement;
    vi.spyOn(OrdersRepo.prototype, "commitPlacement").mockImplementationOnce(async function (this: OrdersRepo, ...args) {
      await commit.apply(this, args);
      throw new Error("worker killed after commit");
    });
    vi.spyOn(OrdersRepo.prototype, "findOrder").mockRejectedValue(new Error("worker killed"));
    const body = { userId, orderProducts: [{ productId: p, quantity: 2 }] };
    const died = await testApp({}, { now: () => t }).post("/api/v1/orders", body, withKey("order-crash"));
    expect(died.status).toBe(500);
    vi.restoreAllMocks();
    const retried = await testApp({}, { now: () => t + 121_000 }).post("/api/v1/orders", body, withKey("order-crash"));
    expect(retried.status).toBe(201);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    const rows = await env.DB.prepare("SELECT id, status FROM orders WHERE user_id = ? AND status != 'FAILED'").bind(userId).all();
    expect(rows.results).toEqual([{ id: retried.body.data.orderId, status: "NOT_PAID" }]);
    await assertStockConservation([p], 5);
  });
});
