import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createProduct, createUser } from "../support/http";
import { eventually, sinkRecords } from "../support/events";

describe("a paid order reaches the data platform", () => {
  it("one payment -> one outbox row -> one delivery (relay right after commit, real queue, consumer)", async () => {
    const userId = await createUser(50_000);
    const productId = await createProduct(1_500, 10);
    const placed = await api.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 2 }] });
    expect(placed.status).toBe(201);
    const orderId = placed.body.data.orderId;
    expect((await api.post("/api/v1/points/use", { userId, orderId })).status).toBe(200);

    const rows = await env.DB.prepare("SELECT event_id FROM outbox WHERE type = 'order.completed' AND aggregate_id = ?")
      .bind(String(orderId))
      .all<{ event_id: string }>();
    expect(rows.results).toHaveLength(1);
    const eventId = rows.results[0]!.event_id;
    await eventually(
      async () => (await env.DB.prepare("SELECT status FROM outbox WHERE event_id = ?").bind(eventId).first("status")) === "PUBLISHED",
    );
    const delivered = await eventually(async () => {
      const r = await sinkRecords(eventId);
      return r.length > 0 && r;
    });
    expect(delivered).toHaveLength(1);
    expect(delivered[0]!.body).toMatchObject({ type: "order.completed", order: { orderId, userId, totalAmount: 3_000 } });
    await eventually(
      async () => (await env.DB.prepare("SELECT 1 AS hit FROM event_deliveries WHERE event_id = ?").bind(eventId).first("hit")) === 1,
    );
    expect(await sinkRecords(eventId)).toHaveLength(1);
  });
});
