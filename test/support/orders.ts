import { env } from "cloudflare:workers";
import { shardObjectName } from "../../src/sharding/routing";
import { FAILED_RETENTION_MS } from "../../src/orders/order-expiry.job";
import { api, createProduct, createUser, type ApiResponse } from "./http";

/**
 * Gives `userId` a coupon by inserting the user_coupons row directly (issuance
 * routes live elsewhere). Defaults: issued a minute ago, valid for 7 days.
 */
export async function createUserCoupon(
  userId: number,
  couponId: number,
  opts: { issuedAt?: number; expiresAt?: number } = {},
): Promise<number> {
  const issuedAt = opts.issuedAt ?? Date.now() - 60_000;
  const expiresAt = opts.expiresAt ?? Date.now() + 7 * 86_400_000;
  const row = await env.DB.prepare("INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) VALUES (?, ?, ?, ?) RETURNING id")
    .bind(userId, couponId, issuedAt, expiresAt)
    .first<{ id: number }>();
  return row!.id;
}

export function placeOrder(userId: number, lines: [productId: number, quantity: number][], userCouponId?: number): Promise<ApiResponse> {
  return api.post("/api/v1/orders", {
    userId,
    ...(userCouponId !== undefined ? { userCouponId } : {}),
    orderProducts: lines.map(([productId, quantity]) => ({ productId, quantity })),
  });
}

/** Places an order that must succeed; returns its id. */
export async function placedOrderId(userId: number, lines: [number, number][], userCouponId?: number): Promise<number> {
  const res = await placeOrder(userId, lines, userCouponId);
  if (res.status !== 201) throw new Error(`placeOrder: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data.orderId;
}

export function payOrder(userId: number, orderId: number): Promise<ApiResponse> {
  return api.post("/api/v1/points/use", { userId, orderId });
}

export function cancelOrder(userId: number, orderId: number): Promise<ApiResponse> {
  return api.post(`/api/v1/orders/${orderId}/cancel`, { userId });
}

/** The stock object of `productId`'s shard `shard` (0: the object of an unsharded product). */
export function stockStub(productId: number, shard = 0) {
  return env.PRODUCT_STOCK.get(env.PRODUCT_STOCK.idFromName(shardObjectName(productId, shard)));
}

export async function available(productId: number): Promise<number> {
  const snap = await stockStub(productId).snapshot(productId);
  if (!snap) throw new Error(`no stock for product ${productId}`);
  return snap.available;
}

export async function orderRow(orderId: number) {
  return env.DB.prepare("SELECT * FROM orders WHERE id = ?").bind(orderId).first<Record<string, any>>();
}

export async function userCouponRow(id: number) {
  return env.DB.prepare("SELECT used_at, order_id FROM user_coupons WHERE id = ?")
    .bind(id)
    .first<{ used_at: number | null; order_id: number | null }>();
}

export async function balanceOf(userId: number): Promise<number> {
  return (await env.DB.prepare("SELECT balance FROM user_balances WHERE user_id = ?").bind(userId).first<number>("balance"))!;
}

/** Pushes an order's payment deadline into the past, as if its window had run out. */
export async function backdateExpiry(orderId: number): Promise<void> {
  await env.DB.prepare("UPDATE orders SET expires_at = ? WHERE id = ?")
    .bind(Date.now() - 1_000, orderId)
    .run();
}

/** `n` FAILED placement attempts past their retention, settled, with one item each (one INSERT ... SELECT); returns their user. */
export async function seedFailedAttempts(n: number): Promise<number> {
  const userId = await createUser();
  const p = await createProduct(100, 1);
  const at = Date.now() - FAILED_RETENTION_MS - 60_000;
  await env.DB.batch([
    env.DB.prepare(
      `WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
       INSERT INTO orders (user_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, closed_at, updated_at)
       SELECT ?2, 'FAILED', 0, 0, 0, ?3, ?3, ?3, ?3 FROM seq`,
    ).bind(n, userId, at),
    env.DB.prepare(
      `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount) SELECT id, ?2, 1, 100, 100 FROM orders WHERE user_id = ?1`,
    ).bind(userId, p),
  ]);
  return userId;
}
