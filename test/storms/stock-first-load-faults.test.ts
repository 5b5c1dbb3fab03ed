import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ProductStock } from "../../src/products/product-stock.do";
import { createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { placeOrder, stockStub } from "../support/orders";

const OVERLOADED = "D1_ERROR: D1 DB is overloaded. Requests queued for too long.";

/**
 * A product row written straight to D1: no admin call primed its stock object, so the
 * object's first call is the one that loads it from D1.
 */
async function unprimedProduct(stock: number): Promise<number> {
  const now = Date.now();
  const row = await env.DB.prepare(
    "INSERT INTO products (name, description, price, stock, stock_shards, created_at, updated_at) VALUES ('cold', '', 100, ?, 1, ?, ?) RETURNING id",
  )
    .bind(stock, now, now)
    .first<{ id: number }>();
  return row!.id;
}

/**
 * Makes the object's next `failures` D1 queries throw D1's overload error (its first load is
 * its only D1 read), then lets them through; returns how many were refused so far. The
 * object also gets a marker in memory: a reset object would come back without it.
 */
async function failFirstLoads(productId: number, failures: number): Promise<() => Promise<{ refused: number; marker: unknown }>> {
  const stub = stockStub(productId);
  await runInDurableObject(stub, (obj: ProductStock) => {
    const o = obj as unknown as { d1: D1Database; refused: number; marker: string };
    const real = o.d1;
    o.refused = 0;
    o.marker = "same incarnation";
    o.d1 = {
      ...real,
      batch: real.batch.bind(real),
      prepare: (query: string) => {
        if (o.refused >= failures) return real.prepare(query);
        o.refused++;
        const fail = () => Promise.reject(new Error(OVERLOADED));
        const statement: Record<string, unknown> = { first: fail, all: fail, run: fail, raw: fail };
        statement.bind = () => statement;
        return statement as unknown as D1PreparedStatement;
      },
    } as D1Database;
  });
  return () =>
    runInDurableObject(stub, (obj: ProductStock) => {
      const o = obj as unknown as { refused?: number; marker?: unknown };
      return { refused: o.refused ?? 0, marker: o.marker };
    });
}

afterEach(() => vi.restoreAllMocks());

describe("ProductStock's first load from D1 meets a D1 blip", () => {
  it("fails that call with a retryable error, keeps the object (no reset), and loads on the next call", async () => {
    const p = await unprimedProduct(6);
    const probe = await failFirstLoads(p, 1);
    const stub = stockStub(p);
    vi.spyOn(console, "error").mockImplementation(() => {});

    const refused = await stub.reserve({ productId: p, orderId: 5_000_001, quantity: 2, now: Date.now(), confirmed: true }).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Not reset: the object that refused is the one that answers next, with its memory.
    expect(await probe(), "the object was reset").toEqual({ refused: 1, marker: "same incarnation" });
    expect(String(refused)).toMatch(/stock not loaded: D1 unavailable, retry/);

    const second = await stub.reserve({ productId: p, orderId: 5_000_002, quantity: 2, now: Date.now(), confirmed: true });
    expect(second).toMatchObject({ ok: true, available: 4, reservation: { quantity: 2, status: "confirmed" } });
    // Still the same object: nothing reset, its memory (and the counters the admin view shows) intact.
    expect(await probe()).toEqual({ refused: 1, marker: "same incarnation" });
    expect(await stub.state(p, 0)).toMatchObject({ available: 4, confirmed: 2, requests: 2 });
    // The failed call took nothing: the order that met the blip holds no reservation.
    expect(await stub.release(5_000_001)).toEqual({ ok: true, released: 0 });
    expect(await stub.snapshot(p)).toEqual({ productId: p, available: 4, held: 0, confirmed: 2, sold: 0 });
  });

  it("through the API: the order meeting the blip is 503 with Retry-After and leaves nothing behind; the retry is placed", async () => {
    const userId = await createUser(10_000);
    const p = await unprimedProduct(5);
    await failFirstLoads(p, 1);
    const quiet = vi.spyOn(console, "warn").mockImplementation(() => {}); // the expected 503 logs a warning

    const first = await placeOrder(userId, [[p, 2]]);
    expect(first.status).toBe(503);
    expect(errorCode(first)).toBe("SERVICE_UNAVAILABLE");
    expect(first.headers.get("retry-after")).toBe("1");
    expect(quiet.mock.calls.some(([line]) => String(line).includes('"msg":"service unavailable"'))).toBe(true);

    const retry = await placeOrder(userId, [[p, 2]]);
    expect(retry.status).toBe(201);
    await assertStockConservation([p], 5);
  });
});
