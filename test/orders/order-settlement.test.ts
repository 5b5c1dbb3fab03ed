import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { loadConfig } from "../../src/config";
import { settleUnsettledOrders } from "../../src/orders/order-expiry.job";
import { SETTLE_BACKOFF_BASE_MS } from "../../src/orders/order-sweep.repo";
import { DurableObjectStock, type StockPort } from "../../src/products/product-stock.client";
import { createServices } from "../../src/services";
import { createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { available, orderRow, placedOrderId } from "../support/orders";

async function runCron(scheduledTime = Date.now()) {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ cron: "* * * * *", scheduledTime }), env, ctx);
  await waitOnExecutionContext(ctx);
}

/** As if the cancel batch committed at `at` and the Worker died before telling the objects. */
async function cancelledUnsettled(userId: number, productId: number, at: number): Promise<number> {
  const orderId = await placedOrderId(userId, [[productId, 1]]);
  await env.DB.prepare("UPDATE orders SET status = 'CANCELLED', updated_at = ?1, expires_at = ?1 WHERE id = ?2").bind(at, orderId).run();
  return orderId;
}

const real = new DurableObjectStock(env.PRODUCT_STOCK);
const sweep = () => createServices(env, loadConfig(env)).orderSweep;

describe("the settle sweep", () => {
  it("backs off an order whose stock object keeps throwing, so the orders behind it are still settled", async () => {
    const userId = await createUser();
    const down = await createProduct(100, 5);
    const up = await createProduct(100, 5);
    const now = Date.now();
    const stuck = await cancelledUnsettled(userId, down, now - 60_000);
    const next = await cancelledUnsettled(userId, up, now - 60_000);
    const broken: StockPort = Object.assign(Object.create(real), {
      settleMany: (productId: number, ...rest: [number, number[], number[]]) =>
        productId === down ? Promise.reject(new Error("Durable Object is overloaded")) : real.settleMany(productId, ...rest),
    });
    // One order per run: the first run picks the stuck order (lowest id) and fails; the second must not pick it again.
    expect(await settleUnsettledOrders({ sweep: sweep(), stock: broken }, now, 1, 1)).toBe(0);
    expect(await orderRow(stuck)).toMatchObject({ settle_attempts: 1, settle_after: now + SETTLE_BACKOFF_BASE_MS, closed_at: null });
    expect(await settleUnsettledOrders({ sweep: sweep(), stock: broken }, now, 1, 1)).toBe(1);
    expect((await orderRow(next))!.closed_at).toBe(now);
    expect(await available(up)).toBe(5);
    // Once its backoff is over and the object answers again, the stuck order is settled too.
    expect(await settleUnsettledOrders({ sweep: sweep(), stock: real }, now + SETTLE_BACKOFF_BASE_MS - 1, 1, 1)).toBe(0);
    expect(await settleUnsettledOrders({ sweep: sweep(), stock: real }, now + SETTLE_BACKOFF_BASE_MS, 1, 1)).toBe(1);
    expect(await available(down)).toBe(5);
    await assertStockConservation([down, up], 5);
  });

  it("settles an order whose object was down for more than a day: no age cut-off strands its stock", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const orderId = await cancelledUnsettled(userId, p, Date.now() - 3 * 86_400_000);
    expect(await available(p)).toBe(4);
    await runCron();
    expect((await orderRow(orderId))!.closed_at).not.toBeNull();
    expect(await available(p)).toBe(5);
    await assertStockConservation([p], 5);
  });

  it("doubles the backoff per failed attempt, up to an hour, and never gives up", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const orderId = await cancelledUnsettled(userId, p, Date.now() - 60_000);
    const broken: StockPort = Object.assign(Object.create(real), { settleMany: () => Promise.reject(new Error("reset")) });
    let t = Date.now();
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      await settleUnsettledOrders({ sweep: sweep(), stock: broken }, t, 10, 1);
      const row = (await orderRow(orderId))!;
      waits.push(row.settle_after - t);
      t = row.settle_after;
    }
    expect(waits).toEqual([1, 2, 4, 8, 16, 32, 60, 60].map((m) => m * 60_000));
    expect(await settleUnsettledOrders({ sweep: sweep(), stock: real }, t, 10, 1)).toBe(1);
    await assertStockConservation([p], 5);
  });
});
