import { env } from "cloudflare:workers";

/** How much past a shop has: rows of each history table, written by `writeHistory`. */
export interface HistorySize {
  /** Orders of other users, PAID long ago and settled, one line each. */
  orders: number;
  pointHistory: number;
  userCoupons: number;
  /** Published outbox rows and their delivery records, recent (inside the retention window). */
  events: number;
}

const DAY = 86_400_000;

/**
 * Writes a miniature year of history into the test file's D1 in a few statements
 * (recursive CTEs, no round trip per row): users with balances, closed PAID orders
 * with their lines spread over 8..365 days ago, point history, used-up user coupons,
 * and recent published events with their delivery records. Nothing in it is due for
 * any job: orders are settled, events are younger than the retention, coupons are
 * not tied to a NOT_PAID order. The lines are of `productId` (the catalogue does not grow);
 * the coupon they used is new and returned.
 */
export async function writeHistory(size: HistorySize, productId: number, now = Date.now()): Promise<{ couponId: number }> {
  const coupon = await env.DB.prepare(
    "INSERT INTO coupons (name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, valid_days, created_at) VALUES ('history', 'AMOUNT', 100, ?2, ?2, ?1, ?1 + 1, 7, ?1) RETURNING id",
  )
    .bind(now - 400 * DAY, Math.max(1, size.userCoupons))
    .first<{ id: number }>();
  const couponId = coupon!.id;
  const seq = (n: number) => `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ${Math.max(1, Math.floor(n))})`;
  const users = Math.max(size.userCoupons, 100);
  const firstUser = ((await env.DB.prepare("SELECT coalesce(max(id), 0) AS m FROM users").first<{ m: number }>())?.m ?? 0) + 1;
  const firstOrder = ((await env.DB.prepare("SELECT coalesce(max(id), 0) AS m FROM orders").first<{ m: number }>())?.m ?? 0) + 1;
  // ?1 now, ?2 first user id, ?3 user count, ?4 product, ?5 first order id, ?6 coupon
  const at = (expr: string) => `(?1 - (8 + (${expr}) % 358) * ${DAY})`;
  await env.DB.batch(
    [
      `${seq(users)} INSERT INTO users (id, name, created_at) SELECT ?2 + n - 1, 'history-' || n, ?1 - 400 * ${DAY} FROM seq`,
      `${seq(users)} INSERT INTO user_balances (user_id, balance, updated_at) SELECT ?2 + n - 1, 1000, ?1 - 400 * ${DAY} FROM seq`,
      `${seq(size.orders)} INSERT INTO orders (id, user_id, status, items_amount, discount_amount, total_amount, created_at, updated_at, expires_at, paid_at, closed_at)
         SELECT ?5 + n - 1, ?2 + n % ?3, 'PAID', 1000, 0, 1000, ${at("n")}, ${at("n")}, ${at("n")} + 900000, ${at("n")}, ${at("n")} FROM seq`,
      `${seq(size.orders)} INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, paid_at) SELECT ?5 + n - 1, ?4, 1, 1000, 1000, ${at("n")} FROM seq`,
      `${seq(size.pointHistory)} INSERT INTO point_history (user_id, type, amount, balance_after, created_at) SELECT ?2 + n % ?3, 'CHARGE', 10, 1000, ${at("n")} FROM seq`,
      `${seq(size.userCoupons)} INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) SELECT ?2 + n - 1, ?6, ${at("n")}, ${at("n")} + ${7 * DAY} FROM seq`,
      `${seq(size.events)} INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
         SELECT 'history-' || ?5 || '-' || n, 'order.completed', n, '{}', 'PUBLISHED', 1, ?1 - 3600000, ?1 - 3600000, ?1 - 3600000 FROM seq`,
      `${seq(size.events)} INSERT INTO event_deliveries (event_id, type, delivered_at) SELECT 'history-' || ?5 || '-' || n, 'order.completed', ?1 - 3600000 FROM seq`,
    ].map((sql) => {
      const params = [now, firstUser, users, productId, firstOrder, couponId];
      const used = Math.max(0, ...[...sql.matchAll(/\?(\d)/g)].map((m) => Number(m[1])));
      return env.DB.prepare(sql).bind(...params.slice(0, used));
    }),
  );
  return { couponId };
}
