import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { stockStub } from "./orders";

/**
 * The invariants every storm test ends with (DESIGN §3 "Stock conservation"):
 * for each product, initial stock + restocks = available in the DO + quantity
 * reserved by NOT_PAID orders + quantity sold in PAID orders; the DO's own
 * books agree (held+confirmed = NOT_PAID lines, sold = PAID lines; no order in
 * any other state keeps units); the D1 projection, once flushed, equals the DO; and every
 * balance is within 0..5,000,000 and equals charges - uses + refunds.
 * `initialPlusRestocks` is one number for all products or one per product.
 */
export async function assertStockConservation(productIds: number[], initialPlusRestocks: number | number[]): Promise<void> {
  for (const [i, productId] of productIds.entries()) {
    const expected = typeof initialPlusRestocks === "number" ? initialPlusRestocks : initialPlusRestocks[i]!;
    const snap = await stockStub(productId).snapshot(productId);
    expect(snap, `product ${productId} has a stock DO`).toBeDefined();
    const rows = await env.DB.prepare(
      `SELECT o.status AS status, coalesce(sum(i.quantity), 0) AS q FROM order_items i JOIN orders o ON o.id = i.order_id
       WHERE i.product_id = ? GROUP BY o.status`,
    )
      .bind(productId)
      .all<{ status: string; q: number }>();
    const by = Object.fromEntries(rows.results.map((r) => [r.status, r.q]));
    const reserved = by.NOT_PAID ?? 0;
    const sold = by.PAID ?? 0;
    const where = `product ${productId}`;
    expect(snap!.available + reserved + sold, `${where}: available ${snap!.available} + reserved ${reserved} + sold ${sold}`).toBe(expected);
    expect(by.PENDING ?? 0, `${where}: no placement left half-way`).toBe(0);
    expect(snap!.held + snap!.confirmed, `${where}: DO reservations = NOT_PAID lines`).toBe(reserved);
    expect(snap!.sold, `${where}: DO sold = PAID lines`).toBe(sold);
    // The projection is written behind (the object's alarm); flush is the deterministic way to wait for it.
    expect(await stockStub(productId).flush(), `${where}: projection written`).toBe(true);
    const projected = await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(productId).first<number>("stock");
    expect(projected, `${where}: products.stock follows the DO`).toBe(snap!.available);
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
