import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { FINISHED_RETENTION_MS, HOLD_TTL_MS, type ProductStock } from "../../src/products/product-stock.do";
import { PRUNE_FINISHED_SQL } from "../../src/products/stock-shard.store";
import { createProduct } from "../support/http";
import { stockStub } from "../support/orders";

let nextOrderId = 1_000_000;
const orderId = () => nextOrderId++;
/** products.stock once the object has written its projection (it is written behind, by the alarm or `flush`). */
const projected = async (productId: number) => {
  await stockStub(productId).flush();
  return env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(productId).first<number>("stock");
};

/** Moves a hold's deadline into the past, as if HOLD_TTL_MS had passed. */
async function ageHold(productId: number, order: number) {
  await runInDurableObject(stockStub(productId), (_obj: ProductStock, state) => {
    state.storage.sql.exec("UPDATE reservations SET expires_at = ? WHERE order_id = ?", Date.now() - 1, order);
  });
}

describe("ProductStock DO", () => {
  it("initialises from products.stock and keeps the D1 projection in step", async () => {
    const p = await createProduct(100, 7);
    const stub = stockStub(p);
    const r = await stub.reserve({ productId: p, orderId: orderId(), quantity: 3, now: Date.now() });
    expect(r).toMatchObject({ ok: true, available: 4, reservation: { quantity: 3, status: "held" } });
    expect(r.ok && r.reservation.expiresAt).toBeGreaterThan(Date.now() + HOLD_TTL_MS - 5_000);
    expect(await projected(p)).toBe(4);
  });

  it("treats reserving twice for one order as one reservation", async () => {
    const p = await createProduct(100, 5);
    const stub = stockStub(p);
    const o = orderId();
    await stub.reserve({ productId: p, orderId: o, quantity: 2, now: Date.now() });
    const again = await stub.reserve({ productId: p, orderId: o, quantity: 2, now: Date.now() });
    expect(again).toMatchObject({ ok: true, available: 3 });
    expect(await stub.snapshot(p)).toEqual({ productId: p, available: 3, held: 2, confirmed: 0, sold: 0 });
  });

  it("refuses more than is available and never goes below 0", async () => {
    const p = await createProduct(100, 2);
    const stub = stockStub(p);
    expect(await stub.reserve({ productId: p, orderId: orderId(), quantity: 3, now: Date.now() })).toEqual({
      ok: false,
      code: "INSUFFICIENT_STOCK",
      available: 2,
    });
    expect(await stub.reserve({ productId: p, orderId: orderId(), quantity: 2, now: Date.now() })).toMatchObject({
      ok: true,
      available: 0,
    });
    expect(await stub.reserve({ productId: p, orderId: orderId(), quantity: 1, now: Date.now() })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_STOCK",
    });
    expect(await stub.restock(p, -1)).toEqual({ ok: false, code: "INSUFFICIENT_STOCK", available: 0 });
  });

  it("walks held -> confirmed -> sold; a sold reservation is never released", async () => {
    const p = await createProduct(100, 5);
    const stub = stockStub(p);
    const o = orderId();
    await stub.reserve({ productId: p, orderId: o, quantity: 2, now: Date.now() });
    expect(await stub.confirm(o)).toMatchObject({ ok: true, reservation: { status: "confirmed" } });
    expect(await stub.confirm(o)).toMatchObject({ ok: true });
    expect(await stub.sell(o)).toMatchObject({ ok: true, reservation: { status: "sold" } });
    expect(await stub.sell(o)).toMatchObject({ ok: true });
    expect(await stub.release(o)).toEqual({ ok: false, code: "ALREADY_SOLD" });
    expect(await stub.snapshot(p)).toEqual({ productId: p, available: 3, held: 0, confirmed: 0, sold: 2 });
  });

  it("releases held and confirmed reservations once, and a late reserve cannot resurrect them", async () => {
    const p = await createProduct(100, 5);
    const stub = stockStub(p);
    const held = orderId();
    const confirmed = orderId();
    await stub.reserve({ productId: p, orderId: held, quantity: 1, now: Date.now() });
    await stub.reserve({ productId: p, orderId: confirmed, quantity: 2, now: Date.now() });
    await stub.confirm(confirmed);
    expect(await stub.release(held)).toEqual({ ok: true, released: 1 });
    expect(await stub.release(confirmed)).toEqual({ ok: true, released: 2 });
    expect(await stub.release(confirmed)).toEqual({ ok: true, released: 0 });
    expect(await stub.reserve({ productId: p, orderId: held, quantity: 1, now: Date.now() })).toMatchObject({
      ok: false,
      code: "ALREADY_RELEASED",
    });
    // Releasing an order that never reserved leaves a tombstone.
    const never = orderId();
    expect(await stub.release(never)).toEqual({ ok: true, released: 0 });
    expect(await stub.reserve({ productId: p, orderId: never, quantity: 1, now: Date.now() })).toMatchObject({
      ok: false,
      code: "ALREADY_RELEASED",
    });
    expect(await stub.sell(held)).toEqual({ ok: false, code: "ALREADY_RELEASED" });
    expect(await stub.snapshot(p)).toMatchObject({ available: 5, held: 0, confirmed: 0 });
    expect(await projected(p)).toBe(5);
  });

  it("releases a hold that was never confirmed when its alarm fires, and a late confirm fails", async () => {
    const p = await createProduct(100, 4);
    const stub = stockStub(p);
    const o = orderId();
    await stub.reserve({ productId: p, orderId: o, quantity: 3, now: Date.now() });
    await ageHold(p, o);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.snapshot(p)).toMatchObject({ available: 4, held: 0 });
    expect(await projected(p)).toBe(4);
    expect(await stub.confirm(o)).toEqual({ ok: false, code: "NOT_RESERVED" });
    // No hold left: no alarm is pending.
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });

  it("refuses to confirm a hold that timed out before the alarm ran, and gives its units back", async () => {
    const p = await createProduct(100, 4);
    const stub = stockStub(p);
    const o = orderId();
    await stub.reserve({ productId: p, orderId: o, quantity: 2, now: Date.now() });
    await ageHold(p, o);
    expect(await stub.confirm(o)).toEqual({ ok: false, code: "HOLD_EXPIRED" });
    expect(await stub.snapshot(p)).toMatchObject({ available: 4, held: 0 });
  });

  it("keeps confirmed reservations when the alarm releases expired holds", async () => {
    const p = await createProduct(100, 10);
    const stub = stockStub(p);
    const kept = orderId();
    const dropped = orderId();
    await stub.reserve({ productId: p, orderId: kept, quantity: 3, now: Date.now() });
    await stub.confirm(kept);
    await stub.reserve({ productId: p, orderId: dropped, quantity: 4, now: Date.now() });
    await ageHold(p, dropped);
    await runDurableObjectAlarm(stub);
    expect(await stub.snapshot(p)).toEqual({ productId: p, available: 7, held: 0, confirmed: 3, sold: 0 });
  });

  it("restocks and reduces, never below 0; an unknown product is reported, not initialised", async () => {
    const p = await createProduct(100, 3);
    const stub = stockStub(p);
    expect(await stub.restock(p, 5)).toEqual({ ok: true, available: 8 });
    expect(await stub.restock(p, -8)).toEqual({ ok: true, available: 0 });
    expect(await projected(p)).toBe(0);
    expect(await stockStub(88_888_888).restock(88_888_888, 1)).toMatchObject({ ok: false, code: "PRODUCT_NOT_FOUND" });
  });

  it("keeps the projection right even when products.updated_at was moved ahead by someone else", async () => {
    const p = await createProduct(100, 3);
    const stub = stockStub(p);
    await stub.restock(p, 1);
    await env.DB.prepare("UPDATE products SET updated_at = ? WHERE id = ?")
      .bind(Date.now() + 3_600_000, p)
      .run();
    expect(await stub.restock(p, 2)).toEqual({ ok: true, available: 6 });
    expect(await projected(p)).toBe(6);
  });

  it("refuses a non-positive or fractional quantity and a zero delta", async () => {
    const p = await createProduct(100, 3);
    const stub = stockStub(p);
    for (const q of [0, -1, 1.5])
      expect(await stub.reserve({ productId: p, orderId: orderId(), quantity: q, now: Date.now() })).toMatchObject({
        ok: false,
        code: "INVALID_QUANTITY",
      });
    expect(await stub.restock(p, 0)).toMatchObject({ ok: false, code: "INVALID_QUANTITY" });
    expect(await stub.snapshot(p)).toMatchObject({ available: 3, held: 0 });
  });

  it("prunes long-finished reservations but keeps live ones", async () => {
    const p = await createProduct(100, 10);
    const stub = stockStub(p);
    const [sold, released, live] = [orderId(), orderId(), orderId()];
    for (const o of [sold, released, live]) await stub.reserve({ productId: p, orderId: o, quantity: 1, now: Date.now() });
    await stub.confirm(sold);
    await stub.sell(sold);
    await stub.release(released);
    await stub.confirm(live);
    await runInDurableObject(stub, (_o: ProductStock, state) => {
      state.storage.sql.exec("UPDATE reservations SET updated_at = 0");
    });
    const rows = () =>
      runInDurableObject(stub, (_o: ProductStock, state) =>
        state.storage.sql
          .exec<{ order_id: number }>("SELECT order_id FROM reservations ORDER BY order_id")
          .toArray()
          .map((r) => r.order_id),
      );
    // The sale above pruned (the first settlement of an incarnation does): the next prune waits PRUNE_INTERVAL_MS.
    await stub.release(orderId());
    expect(await rows()).toEqual(expect.arrayContaining([sold, released]));
    // The prune that comes when the interval is over (called here rather than waited for).
    await runInDurableObject(stub, (obj: ProductStock) => {
      (obj as unknown as { store: { pruneFinished(now: number): void } }).store.pruneFinished(Date.now());
    });
    const left = await rows();
    expect(left).not.toContain(sold);
    expect(left).not.toContain(released);
    expect(left).toContain(live);
    expect(await stub.snapshot(p)).toMatchObject({ available: 8, confirmed: 1 });
  });

  it("pruning reads only the rows it drops: one index range per finished status, whatever the sales of the last 30 days", async () => {
    const p = await createProduct(100, 200);
    const stub = stockStub(p);
    const ids = Array.from({ length: 150 }, () => orderId());
    for (const o of ids) await stub.reserve({ productId: p, orderId: o, quantity: 1, now: Date.now(), confirmed: true });
    for (const o of ids.slice(0, 100)) await stub.sell(o);
    const { plan, read } = await runInDurableObject(stub, (_o: ProductStock, state) => {
      const sql = state.storage.sql;
      const plan = sql
        .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${PRUNE_FINISHED_SQL}`, 0, 20)
        .toArray()
        .map((r) => r.detail)
        .join(" | ");
      // Nothing is old enough to drop: the statement must read (next to) nothing, not the 100 sold rows.
      const cursor = sql.exec(PRUNE_FINISHED_SQL, Date.now() - FINISHED_RETENTION_MS, 20);
      cursor.toArray();
      return { plan, read: cursor.rowsRead };
    });
    expect(plan).toContain("USING COVERING INDEX reservations_status_updated (status=? AND updated_at<?)");
    expect(read).toBeLessThanOrEqual(10);
    expect(await stub.snapshot(p)).toMatchObject({ available: 50, confirmed: 50, sold: 100 });
  });

  it("serialises 100 concurrent reserves on 30 units without losing an update", async () => {
    const p = await createProduct(100, 30);
    const stub = stockStub(p);
    const results = await Promise.all(
      Array.from({ length: 100 }, () => stub.reserve({ productId: p, orderId: orderId(), quantity: 1, now: Date.now() })),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(30);
    expect(await stub.snapshot(p)).toMatchObject({ available: 0, held: 30 });
    expect(await projected(p)).toBe(0);
  });
});
