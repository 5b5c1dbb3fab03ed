import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createProduct, createUser, errorCode } from "../support/http";
import { badTokens, bearer, JWT_SECRET, pointsState, testApp, tokenFor } from "../support/secure-app";

const app = testApp({ JWT_SECRET });

async function orderState(userId: number) {
  return env.DB.prepare(
    `SELECT (SELECT count(*) FROM orders WHERE user_id = ?1 AND status NOT IN ('PENDING', 'FAILED')) AS orders,
            (SELECT count(*) FROM orders WHERE user_id = ?1 AND (status = 'PENDING' OR (status = 'FAILED' AND closed_at IS NULL))) AS pendingOrHeld,
            (SELECT count(*) FROM orders WHERE user_id = ?1 AND status = 'PAID') AS paid,
            (SELECT count(*) FROM orders WHERE user_id = ?1 AND status = 'CANCELLED') AS cancelled,
            (SELECT count(*) FROM outbox WHERE type = 'order.completed') AS events`,
  )
    .bind(userId)
    .first();
}

describe("order and payment routes with JWT_SECRET set", () => {
  let userId = 0;
  let otherId = 0;
  let productId = 0;
  let orderId = 0;
  let token = "";
  beforeAll(async () => {
    userId = await createUser(100_000);
    otherId = await createUser(100_000);
    productId = await createProduct(1_000, 100);
    token = await tokenFor(userId);
    const placed = await app.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 1 }] }, bearer(token));
    expect(placed.status).toBe(201);
    orderId = placed.body.data.orderId;
  });

  const requests = () => [
    {
      name: "place",
      run: (h: Record<string, string>, u = userId) =>
        app.post("/api/v1/orders", { userId: u, orderProducts: [{ productId, quantity: 1 }] }, h),
    },
    { name: "read", run: (h: Record<string, string>, u = userId) => app.get(`/api/v1/orders/${orderId}?userId=${u}`, h) },
    { name: "cancel", run: (h: Record<string, string>, u = userId) => app.post(`/api/v1/orders/${orderId}/cancel`, { userId: u }, h) },
    { name: "pay", run: (h: Record<string, string>, u = userId) => app.post("/api/v1/points/use", { userId: u, orderId }, h) },
  ];

  it("answers 401 for every bad token on every order route and changes nothing", async () => {
    const before = { orders: await orderState(userId), points: await pointsState(userId) };
    for (const [name, headers] of await badTokens(userId)) {
      for (const r of requests()) {
        const res = await r.run(headers);
        expect(res.status, `${r.name}: ${name}`).toBe(401);
        expect(errorCode(res)).toBe("UNAUTHORIZED");
      }
    }
    expect({ orders: await orderState(userId), points: await pointsState(userId) }).toEqual(before);
  });

  it("answers 403 when the token's user is not the userId in the body or query", async () => {
    const otherToken = await tokenFor(otherId);
    const before = { mine: await orderState(userId), theirs: await orderState(otherId), points: await pointsState(userId) };
    for (const r of requests()) {
      // Someone else's token naming my userId, and my token naming theirs.
      for (const res of [await r.run(bearer(otherToken)), await r.run(bearer(token), otherId)]) {
        expect(res.status, r.name).toBe(403);
        expect(errorCode(res)).toBe("FORBIDDEN");
      }
    }
    expect({ mine: await orderState(userId), theirs: await orderState(otherId), points: await pointsState(userId) }).toEqual(before);
  });

  it("with the right token: read, then 10 racing payments under one Idempotency-Key pay once and answer alike", async () => {
    expect((await app.get(`/api/v1/orders/${orderId}?userId=${userId}`, bearer(token))).body.data.status).toBe("NOT_PAID");
    const before = await pointsState(userId);
    const headers = { ...bearer(token), "idempotency-key": `pay-${orderId}` };
    const results = await Promise.all(Array.from({ length: 10 }, () => app.post("/api/v1/points/use", { userId, orderId }, headers)));
    const statuses = results.map((r) => r.status);
    expect(
      statuses.every((s) => s === 200),
      JSON.stringify(statuses),
    ).toBe(true);
    expect(new Set(results.map((r) => JSON.stringify(r.body))).size).toBe(1);
    expect(results.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(9);
    const after = await pointsState(userId);
    expect(after).toEqual({ balance: before!.balance - 1_000, history: before!.history + 1 });
    expect((await orderState(userId))!.paid).toBe(1);
  });

  it("a retried order placement with the same key makes one order", async () => {
    const before = (await orderState(userId))!.orders as number;
    const headers = { ...bearer(token), "idempotency-key": "place-once" };
    const body = { userId, orderProducts: [{ productId, quantity: 2 }] };
    const [a, b] = await Promise.all([app.post("/api/v1/orders", body, headers), app.post("/api/v1/orders", body, headers)]);
    const c = await app.post("/api/v1/orders", body, headers);
    expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
    expect(new Set([a, b, c].map((r) => r.body.data.orderId)).size).toBe(1);
    expect([a, b, c].filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(2);
    expect((await orderState(userId))!.orders).toBe(before + 1);
    // A twin that lost the race to the commit leaves at most an internal FAILED attempt, holding nothing.
    expect((await orderState(userId))!.pendingOrHeld).toBe(0);
  });
});
