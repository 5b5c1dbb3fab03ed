import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_SHARDS } from "../../src/sharding/routing";
import { adminHeaders, api, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { placedOrderId, stockStub } from "../support/orders";

const path = (p: number) => `/api/v1/admin/products/${p}/stock-shards`;

async function createProduct(stock: number, stockShards?: number): Promise<number> {
  const res = await api.post(
    "/api/v1/admin/products",
    { name: "p", price: 100, stock, ...(stockShards ? { stockShards } : {}) },
    adminHeaders,
  );
  expect(res.status).toBe(201);
  return res.body.data.productId;
}

describe("POST /api/v1/admin/products with stockShards", () => {
  it("creates the product split over its shards: every shard primed, the sum is the stock, D1 holds one row per shard", async () => {
    const p = await createProduct(100, 4);
    expect(await env.DB.prepare("SELECT stock, stock_shards AS k FROM products WHERE id = ?").bind(p).first()).toEqual({
      stock: 100,
      k: 4,
    });
    const view = (await api.get(path(p), adminHeaders)).body.data;
    expect(view).toMatchObject({ productId: p, stockShards: 4, total: { available: 100, held: 0, confirmed: 0, sold: 0 } });
    expect(view.shards.map((s: { shard: number }) => s.shard)).toEqual([0, 1, 2, 3]);
    for (const s of view.shards) {
      expect(s.available).toBeGreaterThan(0);
      expect(s.projected).toBe(s.available);
    }
    await assertStockConservation([p], 100);
  });

  it("defaults to one shard (the object of before) and refuses a count outside 1..MAX_SHARDS", async () => {
    const p = await createProduct(7);
    expect((await api.get(path(p), adminHeaders)).body.data).toEqual({
      productId: p,
      stockShards: 1,
      shards: [
        {
          shard: 0,
          available: 7,
          held: 0,
          confirmed: 0,
          sold: 0,
          projected: 7,
          openTransfers: 0,
          requests: 0,
          d1Batches: 0,
          d1: { calls: 1, rowsRead: 2, rowsWritten: 0, writeTx: 0 },
        },
      ],
      total: { available: 7, held: 0, confirmed: 0, sold: 0 },
    });
    for (const stockShards of [0, MAX_SHARDS + 1, 1.5]) {
      const res = await api.post("/api/v1/admin/products", { name: "p", price: 1, stock: 1, stockShards }, adminHeaders);
      expect(errorCode(res), String(stockShards)).toBe("VALIDATION_FAILED");
    }
  });
});

describe("GET /api/v1/admin/products/{productId}/stock-shards load indicators", () => {
  it("counts per shard the reserve calls it answered (one per line routed to it) and the D1 projection batches it sent", async () => {
    const userId = await createUser(1_000_000);
    const p = await createProduct(40, 4);
    const before = (await api.get(path(p), adminHeaders)).body.data;
    // Priming is not a reservation; it projected every shard (shards 1..3 took a share, shard 0 gave).
    for (const s of before.shards) {
      expect(s.requests, `shard ${s.shard}`).toBe(0);
      expect(s.d1Batches, `shard ${s.shard}`).toBeGreaterThan(0);
      // The object meters its own D1 work: every projection batch it sent wrote (one write transaction each).
      expect(s.d1.writeTx, `shard ${s.shard}: write tx`).toBe(s.d1Batches);
      expect(s.openTransfers, `shard ${s.shard}`).toBe(0);
    }
    const orders = [];
    for (let i = 0; i < 10; i++) orders.push(await placedOrderId(userId, [[p, 1]]));
    for (let shard = 0; shard < 4; shard++) await stockStub(p, shard).flush();
    const after = (await api.get(path(p), adminHeaders)).body.data;
    for (const s of after.shards) {
      expect(s.requests, `shard ${s.shard}: one reserve per line routed to it`).toBe(orders.filter((o) => o % 4 === s.shard).length);
      const reached = s.requests > 0;
      expect(s.d1Batches > before.shards[s.shard].d1Batches, `shard ${s.shard}: projected its reservations`).toBe(reached);
    }
    await assertStockConservation([p], 40);
  });
});

describe("PUT /api/v1/admin/products/{productId}/stock-shards", () => {
  it("raises K: new shards start empty and borrow, orders land on every shard, and stock stays conserved", async () => {
    const userId = await createUser();
    const p = await createProduct(30);
    const before = await placedOrderId(userId, [[p, 2]]);
    const res = await api.put(path(p), { stockShards: 3 }, adminHeaders);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ productId: p, stockShards: 3 });
    const view = (await api.get(path(p), adminHeaders)).body.data;
    expect(view.shards.map((s: { available: number }) => s.available)).toEqual([28, 0, 0]);
    expect(view.shards[0]).toMatchObject({ confirmed: 2 });

    const orders = [];
    for (let i = 0; i < 9; i++) orders.push(await placedOrderId(userId, [[p, 1]]));
    const shards = await env.DB.prepare("SELECT order_id AS o, stock_shard AS s FROM order_items WHERE product_id = ? ORDER BY order_id")
      .bind(p)
      .all<{ o: number; s: number }>();
    expect(shards.results[0]).toEqual({ o: before, s: 0 }); // placed with K = 1
    expect(new Set(shards.results.slice(1).map((r) => r.s))).toEqual(new Set([0, 1, 2]));
    for (const r of shards.results.slice(1)) expect(r.s).toBe(r.o % 3);
    await assertStockConservation([p], 30);
  });

  it("never lowers K (409 STOCK_SHARDS_CANNOT_DECREASE, nothing changed); the same K again is a no-op", async () => {
    const p = await createProduct(10, 4);
    const lower = await api.put(path(p), { stockShards: 2 }, adminHeaders);
    expect(lower.status).toBe(409);
    expect(errorCode(lower)).toBe("STOCK_SHARDS_CANNOT_DECREASE");
    expect(await env.DB.prepare("SELECT stock_shards FROM products WHERE id = ?").bind(p).first("stock_shards")).toBe(4);
    expect((await api.put(path(p), { stockShards: 4 }, adminHeaders)).body.data).toEqual({ productId: p, stockShards: 4 });
    await assertStockConservation([p], 10);
  });

  it("answers 404 for an unknown product, 400 for a bad count, 401 without the admin token", async () => {
    expect(errorCode(await api.put(path(987_700), { stockShards: 2 }, adminHeaders))).toBe("PRODUCT_NOT_FOUND");
    expect(errorCode(await api.get(path(987_700), adminHeaders))).toBe("PRODUCT_NOT_FOUND");
    const p = await createProduct(1);
    for (const body of [{ stockShards: 0 }, { stockShards: MAX_SHARDS + 1 }, {}, { stockShards: 2, extra: 1 }]) {
      expect(errorCode(await api.put(path(p), body, adminHeaders)), JSON.stringify(body)).toBe("VALIDATION_FAILED");
    }
    expect((await api.put(path(p), { stockShards: 2 })).status).toBe(401);
    expect((await api.get(path(p))).status).toBe(401);
  });
});

describe("restock of a sharded product", () => {
  it("goes to shard 0; a reduction larger than shard 0 holds borrows the rest, and never goes below 0", async () => {
    const p = await createProduct(40, 4);
    expect((await api.patch(`/api/v1/admin/products/${p}/stock`, { delta: 10 }, adminHeaders)).status).toBe(200);
    const shard0 = (await stockStub(p, 0).snapshot(p, 0))!.available;
    const cut = await api.patch(`/api/v1/admin/products/${p}/stock`, { delta: -(shard0 + 5) }, adminHeaders);
    expect(cut.status).toBe(200);
    expect((await api.get(path(p), adminHeaders)).body.data.total.available).toBe(50 - shard0 - 5);
    const tooMuch = await api.patch(`/api/v1/admin/products/${p}/stock`, { delta: -1_000 }, adminHeaders);
    expect(errorCode(tooMuch)).toBe("INSUFFICIENT_STOCK");
    await assertStockConservation([p], 50 - shard0 - 5);
  });
});
