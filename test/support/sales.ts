import { env } from "cloudflare:workers";

/**
 * Writes a PAID order with items straight into D1, as the payment batch would
 * (order PAID with paid_at, items with paid_at). For ranking tests that need
 * sales on chosen days without going through the whole order flow.
 */
export async function insertPaidOrder(
  userId: number,
  paidAt: number,
  items: { productId: number; quantity: number; unitPrice?: number }[],
) {
  const lines = items.map((i) => ({ ...i, unitPrice: i.unitPrice ?? 1000 }));
  const total = lines.reduce((s, l) => s + l.unitPrice * l.quantity, 0);
  const order = await env.DB.prepare(
    `INSERT INTO orders (user_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, paid_at, updated_at)
     VALUES (?1, 'PAID', ?2, 0, ?2, ?3, ?4, ?3, ?3) RETURNING id`,
  )
    .bind(userId, total, paidAt, paidAt + 900_000)
    .first<{ id: number }>();
  const orderId = order!.id;
  await env.DB.batch(
    lines.map((l) =>
      env.DB.prepare(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, paid_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
      ).bind(orderId, l.productId, l.quantity, l.unitPrice, l.unitPrice * l.quantity, paidAt),
    ),
  );
  return orderId;
}
