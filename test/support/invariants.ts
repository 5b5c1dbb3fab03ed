import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { ProductStock } from "../../src/products/product-stock.do";
import { stockStub } from "./orders";

/** Transfers a shard opened and has not closed: units a sibling may have granted that are not applied yet. */
async function openTransfers(productId: number, shard: number): Promise<number> {
  return runInDurableObject(
    stockStub(productId, shard),
    (_o: ProductStock, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM transfers_in").one().n,
  );
}

/**
 * The invariants every storm test ends with (docs/ARCHITECTURE.md §3 "Stock conservation"):
 * for each product, initial stock + restocks = available over all its stock
 * shards + quantity reserved by NOT_PAID orders + quantity sold in PAID orders;
 * each shard's own books agree with the lines routed to it (held+confirmed =
 * NOT_PAID lines with that `stock_shard`, sold = PAID lines; no order in any
 * other state keeps units); no transfer between shards is left open; the D1
 * projection, once flushed, has each shard's row equal to the shard and
 * `products.stock` equal to their sum; and every balance is within
 * 0..5,000,000 and equals charges - uses + refunds.
 * `initialPlusRestocks` is one number for all products or one per product.
 */
export async function assertStockConservation(productIds: number[], initialPlusRestocks: number | number[]): Promise<void> {
  for (const [i, productId] of productIds.entries()) {
    const expected = typeof initialPlusRestocks === "number" ? initialPlusRestocks : initialPlusRestocks[i]!;
    const where = `product ${productId}`;
    const shards = (await env.DB.prepare("SELECT stock_shards FROM products WHERE id = ?").bind(productId).first<number>("stock_shards"))!;
    const rows = await env.DB.prepare(
      `SELECT i.stock_shard AS shard, o.status AS status, coalesce(sum(i.quantity), 0) AS q FROM order_items i JOIN orders o ON o.id = i.order_id
       WHERE i.product_id = ? GROUP BY i.stock_shard, o.status`,
    )
      .bind(productId)
      .all<{ shard: number; status: string; q: number }>();
    const lines = (shard: number | undefined, status: string) =>
      rows.results.filter((r) => (shard === undefined || r.shard === shard) && r.status === status).reduce((a, r) => a + r.q, 0);
    expect(lines(undefined, "PENDING"), `${where}: no placement left half-way`).toBe(0);
    expect(
      rows.results.every((r) => r.shard >= 0 && r.shard < shards),
      `${where}: every line on one of its ${shards} shards`,
    ).toBe(true);

    let available = 0;
    const snaps = [];
    for (let shard = 0; shard < shards; shard++) {
      const at = `${where} shard ${shard}/${shards}`;
      const snap = await stockStub(productId, shard).snapshot(productId, shard);
      expect(snap, `${at} has a stock DO`).toBeDefined();
      if (shards > 1) expect(await openTransfers(productId, shard), `${at}: no transfer left open`).toBe(0);
      expect(snap!.held + snap!.confirmed, `${at}: reservations = NOT_PAID lines on this shard`).toBe(lines(shard, "NOT_PAID"));
      expect(snap!.sold, `${at}: sold = PAID lines on this shard`).toBe(lines(shard, "PAID"));
      available += snap!.available;
      snaps.push(snap!);
    }
    const reserved = lines(undefined, "NOT_PAID");
    const sold = lines(undefined, "PAID");
    expect(
      available + reserved + sold,
      `${where}: available ${available} over ${shards} shard(s) + reserved ${reserved} + sold ${sold}`,
    ).toBe(expected);

    // The projection is written behind (each shard's alarm); flush is the deterministic way to wait for it.
    for (let shard = 0; shard < shards; shard++)
      expect(await stockStub(productId, shard).flush(), `${where} shard ${shard}: projection written`).toBe(true);
    const projected = await env.DB.prepare("SELECT shard, available FROM product_stock_shards WHERE product_id = ? ORDER BY shard")
      .bind(productId)
      .all<{ shard: number; available: number }>();
    for (const [shard, snap] of snaps.entries()) {
      const row = projected.results.find((r) => r.shard === shard);
      // A shard that never changed may have no row yet (products.stock below still counts it).
      if (row) expect(row.available, `${where} shard ${shard}: its product_stock_shards row follows the DO`).toBe(snap.available);
    }
    expect(
      projected.results.every((r) => r.shard < shards),
      `${where}: no row for a shard beyond K`,
    ).toBe(true);
    const stock = await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(productId).first<number>("stock");
    expect(stock, `${where}: products.stock = sum of the shards`).toBe(available);
  }
  const balances = await env.DB.prepare(
    `SELECT b.user_id AS userId, b.balance AS balance,
       coalesce((SELECT sum(CASE h.type WHEN 'USE' THEN -h.amount ELSE h.amount END) FROM point_history h WHERE h.user_id = b.user_id), 0) AS net
     FROM user_balances b`,
  ).all<{ userId: number; balance: number; net: number }>();
  for (const b of balances.results) {
    expect(b.balance, `user ${b.userId} balance in range`).toBeGreaterThanOrEqual(0);
    expect(b.balance, `user ${b.userId} balance in range`).toBeLessThanOrEqual(5_000_000);
    expect(b.balance, `user ${b.userId} balance = charges - uses + refunds`).toBe(b.net);
  }
}
