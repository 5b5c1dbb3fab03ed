import { env } from "cloudflare:workers";
import { OrderCompletedV1 } from "../../src/events/event.schemas";
import { describe, expect, it } from "vitest";
import { api, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { backdateExpiry, balanceOf, cancelOrder, createUserCoupon, orderRow, payOrder, placedOrderId, stockStub } from "../support/orders";

async function ledger(userId: number, orderId: number) {
  const [history, outbox, items] = await Promise.all([
    env.DB.prepare("SELECT type, amount, balance_after, order_id FROM point_history WHERE user_id = ? AND type = 'USE'").bind(userId).all(),
    env.DB.prepare("SELECT * FROM outbox WHERE aggregate_id = ?").bind(String(orderId)).all<any>(),
    env.DB.prepare("SELECT paid_at FROM order_items WHERE order_id = ?").bind(orderId).all<{ paid_at: number | null }>(),
  ]);
  return { history: history.results, outbox: outbox.results, itemsPaidAt: items.results.map((i) => i.paid_at) };
}

describe("POST /api/v1/points/use", () => {
  it("deducts the total, writes a USE row, marks the order and its items PAID and appends order.completed", async () => {
    const userId = await createUser(50_000);
    const a = await createProduct(1_000, 10);
    const b = await createProduct(2_500, 10);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 1_500 }));
    const orderId = await placedOrderId(
      userId,
      [
        [a, 2],
        [b, 1],
      ],
      uc,
    );
    const res = await payOrder(userId, orderId);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ orderId, status: "PAID", paidAmount: 3_000, balance: 47_000 });
    expect(await balanceOf(userId)).toBe(47_000);

    const order = (await orderRow(orderId))!;
    expect(order.status).toBe("PAID");
    expect(order.paid_at).not.toBeNull();
    expect(order.closed_at).not.toBeNull();
    const { history, outbox, itemsPaidAt } = await ledger(userId, orderId);
    expect(history).toEqual([{ type: "USE", amount: 3_000, balance_after: 47_000, order_id: orderId }]);
    expect(itemsPaidAt).toEqual([order.paid_at, order.paid_at]);
    expect(outbox).toHaveLength(1);
    // The relay may already have published it (it runs right after the commit, via waitUntil).
    expect(outbox[0]).toMatchObject({ type: "order.completed" });
    expect(["PENDING", "PUBLISHED"]).toContain(outbox[0].status);
    const payload = OrderCompletedV1.parse(JSON.parse(outbox[0].payload));
    expect(payload).toMatchObject({
      eventId: outbox[0].event_id,
      type: "order.completed",
      version: 1,
      order: {
        orderId,
        userId,
        itemsAmount: 4_500,
        discountAmount: 1_500,
        totalAmount: 3_000,
        items: [
          { productId: a, quantity: 2, unitPrice: 1_000, amount: 2_000 },
          { productId: b, quantity: 1, unitPrice: 2_500, amount: 2_500 },
        ],
      },
    });
    expect(payload.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(payload.occurredAt)).toBe(order.paid_at);
    expect(Date.parse(payload.order.paidAt)).toBe(order.paid_at);

    const got = await api.get(`/api/v1/orders/${orderId}?userId=${userId}`);
    expect(got.body.data).toMatchObject({ status: "PAID", paidAt: new Date(order.paid_at).toISOString() });
    expect(await stockStub(a).snapshot(a)).toMatchObject({ available: 8, sold: 2, held: 0, confirmed: 0 });
    await assertStockConservation([a, b], 10);
  });

  it("pays a fully discounted order without a history row", async () => {
    const userId = await createUser(0);
    const p = await createProduct(500, 3);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 9_999 }));
    const orderId = await placedOrderId(userId, [[p, 1]], uc);
    const res = await payOrder(userId, orderId);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ orderId, status: "PAID", paidAmount: 0, balance: 0 });
    const { history, outbox } = await ledger(userId, orderId);
    expect(history).toEqual([]);
    expect(outbox).toHaveLength(1);
    await assertStockConservation([p], 3);
  });

  async function assertUnchanged(userId: number, orderId: number, balance: number, status: string) {
    expect(await balanceOf(userId)).toBe(balance);
    const order = (await orderRow(orderId))!;
    expect(order.status).toBe(status);
    expect(order.paid_at).toBeNull();
    const { history, outbox, itemsPaidAt } = await ledger(userId, orderId);
    expect(history).toEqual([]);
    expect(outbox).toEqual([]);
    expect(itemsPaidAt.every((t) => t === null)).toBe(true);
  }

  it("refuses a short balance with 409 INSUFFICIENT_BALANCE and changes nothing", async () => {
    const userId = await createUser(2_999);
    const p = await createProduct(1_000, 10);
    const orderId = await placedOrderId(userId, [[p, 3]]);
    const res = await payOrder(userId, orderId);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("INSUFFICIENT_BALANCE");
    await assertUnchanged(userId, orderId, 2_999, "NOT_PAID");
    await assertStockConservation([p], 10);
  });

  it("refuses an order past its deadline (before the cron ran) with 409 ORDER_NOT_PAYABLE", async () => {
    const userId = await createUser(100_000);
    const p = await createProduct(1_000, 10);
    const orderId = await placedOrderId(userId, [[p, 1]]);
    await backdateExpiry(orderId);
    const res = await payOrder(userId, orderId);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("ORDER_NOT_PAYABLE");
    await assertUnchanged(userId, orderId, 100_000, "NOT_PAID");
  });

  it("answers 404 ORDER_NOT_FOUND for someone else's or an unknown order", async () => {
    const owner = await createUser(100_000);
    const thief = await createUser(100_000);
    const p = await createProduct(1_000, 10);
    const orderId = await placedOrderId(owner, [[p, 1]]);
    const res = await payOrder(thief, orderId);
    expect(res.status).toBe(404);
    expect(errorCode(res)).toBe("ORDER_NOT_FOUND");
    await assertUnchanged(owner, orderId, 100_000, "NOT_PAID");
    expect(await balanceOf(thief)).toBe(100_000);
    expect(errorCode(await payOrder(owner, 99_999_999))).toBe("ORDER_NOT_FOUND");
  });

  it("refuses a cancelled order and a second payment with 409 ORDER_NOT_PAYABLE", async () => {
    const userId = await createUser(100_000);
    const p = await createProduct(1_000, 10);
    const cancelled = await placedOrderId(userId, [[p, 1]]);
    expect((await cancelOrder(userId, cancelled)).status).toBe(200);
    expect(errorCode(await payOrder(userId, cancelled))).toBe("ORDER_NOT_PAYABLE");
    await assertUnchanged(userId, cancelled, 100_000, "CANCELLED");
    const paid = await placedOrderId(userId, [[p, 2]]);
    expect((await payOrder(userId, paid)).status).toBe(200);
    expect(errorCode(await payOrder(userId, paid))).toBe("ORDER_NOT_PAYABLE");
    expect(await balanceOf(userId)).toBe(98_000);
    await assertStockConservation([p], 10);
  });

  it("validates the body strictly", async () => {
    const userId = await createUser();
    expect(errorCode(await api.post("/api/v1/points/use", { userId }))).toBe("VALIDATION_FAILED");
    expect(errorCode(await api.post("/api/v1/points/use", { userId, orderId: 0 }))).toBe("INVALID_ORDER_ID");
    expect(errorCode(await api.post("/api/v1/points/use", { userId, orderId: 1, x: 1 }))).toBe("VALIDATION_FAILED");
  });
});
