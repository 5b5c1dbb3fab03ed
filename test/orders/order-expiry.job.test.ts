import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { loadConfig } from "../../src/config";
import { expireOrders, FAILED_RETENTION_MS, purgeFailedOrders, STALE_PENDING_MS } from "../../src/orders/order-expiry.job";
import { SubrequestBudget } from "../../src/shared/budget";
import { JOBS } from "../../src/jobs";
import { createServices } from "../../src/services";
import { api, createCoupon, createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import {
  available,
  backdateExpiry,
  createUserCoupon,
  orderRow,
  placedOrderId,
  seedFailedAttempts,
  stockStub,
  userCouponRow,
} from "../support/orders";

/** Runs the Worker's scheduled handler for the every-minute cron and waits for its jobs. */
async function runCron(cron = "* * * * *") {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ cron, scheduledTime: Date.now() }), env, ctx);
  await waitOnExecutionContext(ctx);
}

const deps = () => {
  const s = createServices(env, loadConfig(env));
  return { sweep: s.orderSweep, stock: s.stock };
};

describe("order expiry cron", () => {
  it("expires an unpaid order past its deadline, releases its stock and restores its coupon; a rerun changes nothing", async () => {
    const userId = await createUser();
    const p = await createProduct(1_000, 6);
    const uc = await createUserCoupon(userId, await createCoupon());
    const orderId = await placedOrderId(userId, [[p, 4]], uc);
    const fresh = await placedOrderId(userId, [[p, 1]]);
    await backdateExpiry(orderId);
    await runCron();
    const order = (await orderRow(orderId))!;
    expect(order.status).toBe("EXPIRED");
    expect(order.closed_at).not.toBeNull();
    expect((await orderRow(fresh))!.status).toBe("NOT_PAID");
    expect(await available(p)).toBe(5);
    expect(await userCouponRow(uc)).toEqual({ used_at: null, order_id: null });
    await runCron();
    expect(await available(p)).toBe(5);
    expect((await orderRow(orderId))!.status).toBe("EXPIRED");
    await assertStockConservation([p], 6);
  });

  it("works in bounded batches", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 10);
    const ids = [await placedOrderId(userId, [[p, 1]]), await placedOrderId(userId, [[p, 1]]), await placedOrderId(userId, [[p, 1]])];
    for (const id of ids) await backdateExpiry(id);
    expect(await expireOrders(deps(), Date.now(), 2, 1)).toBe(2);
    expect(await expireOrders(deps(), Date.now(), 2, 1)).toBe(1);
    expect(await expireOrders(deps(), Date.now(), 2, 1)).toBe(0);
    await assertStockConservation([p], 10);
  });

  it("fails a placement that died after reserving (stale PENDING) and releases its units", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const created = Date.now() - STALE_PENDING_MS - 1_000;
    const row = await env.DB.prepare(
      `INSERT INTO orders (user_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at)
       VALUES (?1, 'PENDING', 200, 0, 200, ?2, ?2, ?2) RETURNING id`,
    )
      .bind(userId, created)
      .first<{ id: number }>();
    const orderId = row!.id;
    await env.DB.prepare("INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount) VALUES (?, ?, 2, 100, 200)")
      .bind(orderId, p)
      .run();
    // The saga reserved and confirmed, then the Worker died before the commit batch.
    await stockStub(p).reserve({ productId: p, orderId, quantity: 2, now: Date.now() });
    await stockStub(p).confirm(orderId);
    expect(await available(p)).toBe(3);
    await runCron();
    expect((await orderRow(orderId))!).toMatchObject({ status: "FAILED" });
    expect((await orderRow(orderId))!.closed_at).not.toBeNull();
    expect(await available(p)).toBe(5);
    await assertStockConservation([p], 5);
  });

  it("settles a cancelled order whose request died before releasing the stock", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    const orderId = await placedOrderId(userId, [[p, 2]]);
    // As if the cancel batch committed and the Worker died before telling the DO.
    await env.DB.prepare("UPDATE orders SET status = 'CANCELLED', updated_at = ? WHERE id = ?")
      .bind(Date.now() - 60_000, orderId)
      .run();
    await runCron();
    expect(await available(p)).toBe(5);
    expect((await orderRow(orderId))!.closed_at).not.toBeNull();
    await assertStockConservation([p], 5);
  });

  it("ignores a cron it has no job for", async () => {
    await expect(runCron("0 0 * * *")).resolves.toBeUndefined();
  });
});

describe("purge of failed placement attempts", () => {
  it("deletes FAILED attempts older than the retention with their items, keeps recent ones and real orders", async () => {
    const userId = await createUser(100_000);
    const p = await createProduct(100, 1);
    expect((await api.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] })).status).toBe(201);
    for (let i = 0; i < 3; i++) {
      expect((await api.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] })).status).toBe(409);
    }
    const failed = await env.DB.prepare("SELECT id FROM orders WHERE user_id = ? AND status = 'FAILED' ORDER BY id")
      .bind(userId)
      .all<{ id: number }>();
    expect(failed.results).toHaveLength(3);
    const [old1, old2, recent] = failed.results.map((r) => r.id);
    const now = Date.now();
    await env.DB.prepare("UPDATE orders SET updated_at = ? WHERE id IN (?, ?)")
      .bind(now - FAILED_RETENTION_MS - 1, old1, old2)
      .run();

    const job = JOBS["*/10 * * * *"]!.find((j) => j.name === "failed-orders-purge")!;
    await job.run(createServices(env, loadConfig(env)), now);

    const left = await env.DB.prepare("SELECT id, status FROM orders WHERE user_id = ? ORDER BY id")
      .bind(userId)
      .all<{ id: number; status: string }>();
    expect(left.results.map((r) => r.status)).toEqual(["NOT_PAID", "FAILED"]);
    expect(left.results[1]!.id).toBe(recent);
    const items = await env.DB.prepare("SELECT count(*) AS n FROM order_items WHERE order_id IN (?, ?)").bind(old1, old2).first("n");
    expect(items).toBe(0);
    await assertStockConservation([p], 1);
  });

  it("keeps deleting while a round finds a full batch, and stops at its subrequest budget saying so", async () => {
    const userId = await seedFailedAttempts(5);
    const repo = createServices(env, loadConfig(env)).ordersRepo;
    const now = Date.now();
    expect(await purgeFailedOrders({ repo, batchSize: 2, budget: new SubrequestBudget(1) }, now)).toEqual({
      orders: 2,
      items: 2,
      rounds: 1,
      stoppedOn: "subrequests",
    });
    expect(await purgeFailedOrders({ repo, batchSize: 2 }, now)).toEqual({ orders: 3, items: 3, rounds: 2, stoppedOn: null });
    expect(await env.DB.prepare("SELECT count(*) AS n FROM orders WHERE user_id = ?").bind(userId).first("n")).toBe(0);
  });
});
