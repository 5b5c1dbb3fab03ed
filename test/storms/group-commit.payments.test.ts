import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { expireOrders } from "../../src/orders/order-expiry.job";
import { createServices } from "../../src/services";
import { groupCommitter } from "../../src/shared/group-commit";
import { createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { failingSessionBatches, inOneBatch, meteredWrites } from "../support/groups";
import { assertStockConservation } from "../support/invariants";
import { balanceOf, cancelOrder, createUserCoupon, orderRow, placedOrderId, userCouponRow } from "../support/orders";
import { testApp } from "../support/secure-app";

/**
 * Payments group-committed (issue 18): concurrent `POST /points/use` in one isolate share
 * D1 batches, and each payment's writes are conditional on its own flip of the order to
 * PAID, so a short balance, an unpayable order or a taken key refuses only that payment.
 * `inOneBatch` (test/support/groups.ts) stages exactly who shares a batch.
 */
const USE = "/api/v1/points/use";
const app = testApp({}, { shareWriteBatches: true });
const pay = (userId: number, orderId: number, headers?: Record<string, string>) => () => app.post(USE, { userId, orderId }, headers);
const count = (sql: string, ...binds: unknown[]) =>
  env.DB.prepare(sql)
    .bind(...binds)
    .first<number>("n");
const uses = (userId: number) => count("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'USE'", userId);
const outboxRows = (orderId: number) => count("SELECT count(*) AS n FROM outbox WHERE aggregate_id = ?", String(orderId));

describe("payments share D1 batches", () => {
  it("20 users paying 20 orders go out in 2 batches: each paid once, with its history and outbox row", async () => {
    const p = await createProduct(700, 100);
    const buyers: { userId: number; orderId: number }[] = [];
    for (let i = 0; i < 21; i++) {
      const userId = await createUser(10_000);
      buyers.push({ userId, orderId: await placedOrderId(userId, [[p, 2]]) });
    }
    const { lead, group, batches } = await inOneBatch({
      kind: "orders.pay",
      lead: pay(buyers[0]!.userId, buyers[0]!.orderId),
      group: buyers.slice(1).map((b) => pay(b.userId, b.orderId)),
    });
    expect(batches).toBe(2);
    for (const [i, r] of [lead, ...group].entries()) {
      expect(r.status).toBe(200);
      expect(r.body.data).toEqual({ orderId: buyers[i]!.orderId, status: "PAID", paidAmount: 1_400, balance: 8_600 });
    }
    for (const b of buyers) {
      expect(await balanceOf(b.userId)).toBe(8_600);
      expect(await uses(b.userId)).toBe(1);
      expect(await outboxRows(b.orderId)).toBe(1);
      // Sold in the objects and recorded (`closed_at`, a shared orders.settle batch after the answer).
      expect(await orderRow(b.orderId)).toMatchObject({ status: "PAID", closed_at: expect.any(Number) });
    }
    expect(meteredWrites([lead, ...group])).toMatchObject({ writeTx: 2, sent: 2 });
    await assertStockConservation([p], 100);
  });

  it("a balance that covers 2 of 5 orders in one batch: exactly 2 paid, 3 INSUFFICIENT_BALANCE, never below 0, neighbours paid", async () => {
    const p = await createProduct(1_000, 20);
    const poor = await createUser(2_500);
    const rich = await createUser(10_000);
    const poorOrders: number[] = [];
    for (let i = 0; i < 5; i++) poorOrders.push(await placedOrderId(poor, [[p, 1]]));
    const richOrders = [await placedOrderId(rich, [[p, 1]]), await placedOrderId(rich, [[p, 1]])];
    const { group, split } = await inOneBatch({
      kind: "orders.pay",
      lead: pay(rich, richOrders[0]!),
      group: [
        pay(poor, poorOrders[0]!),
        pay(poor, poorOrders[1]!),
        pay(rich, richOrders[1]!),
        pay(poor, poorOrders[2]!),
        pay(poor, poorOrders[3]!),
        pay(poor, poorOrders[4]!),
      ],
    });
    expect(split).toBe(0);
    const poorResults = group.filter((_, i) => i !== 2);
    expect(poorResults.filter((r) => r.status === 200)).toHaveLength(2);
    for (const r of poorResults.filter((x) => x.status !== 200)) expect(errorCode(r)).toBe("INSUFFICIENT_BALANCE");
    expect(group[2]!.status).toBe(200);
    expect(await balanceOf(poor)).toBe(500);
    expect(await uses(poor)).toBe(2);
    expect(await balanceOf(rich)).toBe(8_000);
    const statuses = await Promise.all(poorOrders.map(async (id) => (await orderRow(id))!.status));
    expect(statuses.filter((s) => s === "PAID")).toHaveLength(2);
    expect(statuses.filter((s) => s === "NOT_PAID")).toHaveLength(3);
    await assertStockConservation([p], 20);
  });

  it("unpayable orders refused inside a batch touch nothing: paid twice, cancelled, past deadline, someone else's", async () => {
    const p = await createProduct(500, 20);
    const a = await createUser(10_000);
    const b = await createUser(10_000);
    const [twice, cancelled, late, other, fine] = [
      await placedOrderId(a, [[p, 1]]),
      await placedOrderId(a, [[p, 1]]),
      await placedOrderId(a, [[p, 1]]),
      await placedOrderId(b, [[p, 1]]),
      await placedOrderId(a, [[p, 2]]),
    ];
    expect((await cancelOrder(a, cancelled!)).status).toBe(200);
    await env.DB.prepare("UPDATE orders SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 1_000, late)
      .run();
    const { group, split } = await inOneBatch({
      kind: "orders.pay",
      lead: pay(b, await placedOrderId(b, [[p, 1]])),
      group: [pay(a, twice!), pay(a, twice!), pay(a, cancelled!), pay(a, late!), pay(a, other!), pay(a, fine!)],
    });
    expect(split).toBe(0);
    expect(group.map((r) => (r.status === 200 ? 200 : errorCode(r)))).toEqual([
      200,
      "ORDER_NOT_PAYABLE",
      "ORDER_NOT_PAYABLE",
      "ORDER_NOT_PAYABLE",
      "ORDER_NOT_FOUND",
      200,
    ]);
    expect(await balanceOf(a)).toBe(10_000 - 500 - 1_000);
    expect(await uses(a)).toBe(2);
    expect(await balanceOf(b)).toBe(10_000 - 500);
    expect((await orderRow(other!))!.status).toBe("NOT_PAID");
    expect(await outboxRows(twice!)).toBe(1);
    await assertStockConservation([p], 20);
  });

  it("Idempotency-Key twins in one batch pay once; the others replay the same answer", async () => {
    const p = await createProduct(1_000, 10);
    const userId = await createUser(10_000);
    const orderId = await placedOrderId(userId, [[p, 3]]);
    const { group, split } = await inOneBatch({
      kind: "orders.pay",
      lead: pay(userId, await placedOrderId(userId, [[p, 1]])),
      group: Array.from({ length: 6 }, () => pay(userId, orderId, { "idempotency-key": "pay-twin" })),
    });
    expect(split).toBe(0);
    expect(group.map((r) => r.status)).toEqual(Array(6).fill(200));
    for (const r of group) expect(r.body).toEqual(group[0]!.body);
    expect(group.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(5);
    expect(group[0]!.body.data).toEqual({ orderId, status: "PAID", paidAmount: 3_000, balance: 6_000 });
    expect(await balanceOf(userId)).toBe(6_000);
    expect(await uses(userId)).toBe(2);
    await assertStockConservation([p], 10);
  });
});

describe("exactly one of payment, cancel and expiry wins, with payments in shared batches", () => {
  it("12 payments wait in one batch while 6 of their orders are cancelled: the 6 are refused, the others paid, coupons follow", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(1_000, 50);
    const orders: { orderId: number; uc: number }[] = [];
    for (let i = 0; i < 12; i++) {
      const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 100 }));
      orders.push({ orderId: await placedOrderId(userId, [[p, 2]], uc), uc });
    }
    const q = groupCommitter(env.DB, "orders.pay");
    const release = q.hold();
    const lead = pay(userId, await placedOrderId(userId, [[p, 1]]))();
    await q.whenHeld();
    const pays = orders.map((o) => pay(userId, o.orderId)());
    await q.whenQueued(12);
    // The payments are queued (not sent): the cancels of the even orders land first.
    const cancels = await Promise.all(orders.filter((_, i) => i % 2 === 0).map((o) => cancelOrder(userId, o.orderId)));
    expect(cancels.map((c) => c.status)).toEqual(Array(6).fill(200));
    release();
    expect((await lead).status).toBe(200);
    const results = await Promise.all(pays);
    for (const [i, o] of orders.entries()) {
      const cancelled = i % 2 === 0;
      expect(cancelled ? errorCode(results[i]!) : results[i]!.status).toBe(cancelled ? "ORDER_NOT_PAYABLE" : 200);
      expect((await orderRow(o.orderId))!.status).toBe(cancelled ? "CANCELLED" : "PAID");
      expect(await userCouponRow(o.uc)).toEqual(
        cancelled ? { used_at: null, order_id: null } : { used_at: expect.any(Number), order_id: o.orderId },
      );
    }
    expect(await balanceOf(userId)).toBe(1_000_000 - 1_000 - 6 * 1_900);
    expect(await uses(userId)).toBe(7);
    await assertStockConservation([p], 50);
  });

  it("12 payments wait in one batch while the expiry sweep runs past their deadline: every order expires once, no payment lands", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(1_000, 50);
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await placedOrderId(userId, [[p, 1]]));
    const s = createServices(env, loadConfig(env));
    const later = Date.now() + loadConfig(env).orderPaymentTtlMs + 1_000;
    const q = groupCommitter(env.DB, "orders.pay");
    const release = q.hold();
    const lead = pay(userId, await placedOrderId(await createUser(0), [[p, 1]]))();
    await q.whenHeld();
    const pays = ids.map((id) => pay(userId, id)());
    await q.whenQueued(12);
    // Earlier tests of this file left unpaid orders too (storage is per file): at least our 12.
    expect(await expireOrders({ sweep: s.orderSweep, stock: s.stock }, later)).toBeGreaterThanOrEqual(12);
    release();
    await lead;
    for (const r of await Promise.all(pays)) expect(errorCode(r)).toBe("ORDER_NOT_PAYABLE");
    for (const id of ids) expect((await orderRow(id))!.status).toBe("EXPIRED");
    expect(await balanceOf(userId)).toBe(1_000_000);
    expect(await uses(userId)).toBe(0);
    await assertStockConservation([p], 50);
  });
});

describe("a shared payment batch that D1 fails as a whole", () => {
  for (const applied of [false, true]) {
    it(`${applied ? "landed, answer lost: each payment is read back from the primary and answered 200 PAID" : "never landed: each payment is answered 503, nothing deducted"}; paid at most once`, async () => {
      const p = await createProduct(1_000, 30);
      const buyers: { userId: number; orderId: number }[] = [];
      for (let i = 0; i < 5; i++) {
        const userId = await createUser(5_000);
        buyers.push({ userId, orderId: await placedOrderId(userId, [[p, 1]]) });
      }
      const DB = failingSessionBatches((_, n) => n === 2, applied);
      const failingApp = testApp({ DB } as unknown as Record<string, string>, { shareWriteBatches: true });
      const payOn = (b: { userId: number; orderId: number }) => () => failingApp.post(USE, { userId: b.userId, orderId: b.orderId });
      const { lead, group, batches } = await inOneBatch({
        binding: DB,
        kind: "orders.pay",
        lead: payOn(buyers[0]!),
        group: buyers.slice(1).map(payOn),
      });
      expect(batches).toBe(2);
      expect(lead.status).toBe(200);
      for (const [i, r] of group.entries()) {
        const b = buyers[i + 1]!;
        if (applied) expect(r.body.data).toEqual({ orderId: b.orderId, status: "PAID", paidAmount: 1_000, balance: 4_000 });
        else expect([r.status, r.headers.get("retry-after")]).toEqual([503, "1"]);
        expect(await balanceOf(b.userId)).toBe(applied ? 4_000 : 5_000);
        expect(await uses(b.userId)).toBe(applied ? 1 : 0);
        expect((await orderRow(b.orderId))!.status).toBe(applied ? "PAID" : "NOT_PAID");
      }
      // A retry of a batch that never landed pays now, once.
      if (!applied) for (const b of buyers.slice(1)) expect((await payOn(b)()).status).toBe(200);
      for (const b of buyers.slice(1)) expect(await uses(b.userId)).toBe(1);
      await assertStockConservation([p], 30);
    });
  }
});
