import { env } from "cloudflare:workers";

const DAY = 86_400_000;

/** `n` consecutive integers 1..n as a CTE (SQLite has no generate_series by default). */
const SEQ = "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)";

/**
 * A shop's settled past, none of it due for any cron job: `n` users, each with a used
 * coupon, one closed order (PAID, EXPIRED, CANCELLED or FAILED in turn, the FAILED ones
 * still inside their retention) and its item paid days ago, a point_history row, a
 * published outbox row, a delivery record, a dead letter (never replayed or replayed
 * recently) and an unexpired idempotency key. Inserted with one INSERT ... SELECT per
 * table from a recursive sequence, so thousands of rows cost a few statements.
 * Rows-read tests seed it to show a job's reads do not grow with it.
 */
export async function seedSettledHistory(opts: { n: number; tag: string; now: number }): Promise<void> {
  const { n, tag, now } = opts;
  const old = now - 10 * DAY;
  const product = await env.DB.prepare(
    "INSERT INTO products (name, price, stock, created_at, updated_at) VALUES (?1, 100, 0, ?2, ?2) RETURNING id",
  )
    .bind(`${tag}-product`, old)
    .first<number>("id");
  const coupon = await env.DB.prepare(
    `INSERT INTO coupons (name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, created_at)
     VALUES (?1, 'AMOUNT', 10, ?2, ?2, ?3, ?4, ?3) RETURNING id`,
  )
    .bind(`${tag}-coupon`, n, old - DAY, now + DAY)
    .first<number>("id");
  const firstUser = ((await env.DB.prepare("SELECT coalesce(max(id), 0) AS m FROM users").first<number>("m")) ?? 0) + 1;
  // Users firstUser.. get one each of everything below, keyed by u = user id.
  const users = `${SEQ} SELECT ?2 || '-' || x, ?3 FROM seq`;
  const status = "CASE u % 4 WHEN 0 THEN 'PAID' WHEN 1 THEN 'EXPIRED' WHEN 2 THEN 'CANCELLED' ELSE 'FAILED' END";
  await env.DB.batch([
    env.DB.prepare(`INSERT INTO users (name, created_at) ${users}`).bind(n, tag, old),
    env.DB.prepare(
      `INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at)
       SELECT id, ?1, ?2, ?3 FROM users WHERE id >= ?4 AND name LIKE ?5 || '-%'`,
    ).bind(coupon, old, now + DAY, firstUser, tag),
    env.DB.prepare(
      `INSERT INTO orders (user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, paid_at, closed_at, updated_at)
       SELECT u, uc, ${status}, 100, 10, 90, ?1, ?1 + 900000, CASE WHEN u % 4 = 0 THEN ?1 + 60000 END, ?1 + 60000,
              CASE WHEN u % 4 = 3 THEN ?2 ELSE ?1 + 60000 END
       FROM (SELECT uc.user_id AS u, uc.id AS uc FROM user_coupons uc WHERE uc.coupon_id = ?3)`,
    ).bind(old, now - DAY, coupon),
    env.DB.prepare(
      `UPDATE user_coupons SET used_at = ?1, order_id = (SELECT o.id FROM orders o WHERE o.user_coupon_id = user_coupons.id)
       WHERE coupon_id = ?2`,
    ).bind(old, coupon),
    env.DB.prepare(
      `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, paid_at)
       SELECT o.id, ?1, 1, 100, 100, o.paid_at FROM orders o JOIN user_coupons uc ON uc.id = o.user_coupon_id WHERE uc.coupon_id = ?2`,
    ).bind(product, coupon),
    env.DB.prepare(
      `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
       SELECT user_id, 'USE', 90, 0, order_id, ?1 FROM user_coupons WHERE coupon_id = ?2`,
    ).bind(old, coupon),
    env.DB.prepare(
      `INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
       ${SEQ} SELECT ?2 || '-ev-' || x, 'order.completed', x, '{}', 'PUBLISHED', 1, ?3 + x, ?3 + x, ?3 + x FROM seq`,
    ).bind(n, tag, now - DAY),
    env.DB.prepare(
      `INSERT INTO event_deliveries (event_id, type, delivered_at) ${SEQ} SELECT ?2 || '-ev-' || x, 'order.completed', ?3 + x FROM seq`,
    ).bind(n, tag, now - DAY),
    env.DB.prepare(
      `INSERT INTO dead_letters (event_id, type, payload, attempts, created_at, replayed_at)
       ${SEQ} SELECT ?2 || '-dl-' || x, 'order.completed', '{}', 6, ?3, CASE WHEN x % 2 = 0 THEN ?3 + x END FROM seq`,
    ).bind(n, tag, now - DAY),
    env.DB.prepare(
      `INSERT INTO idempotency_keys (user_id, key, scope, request_hash, status_code, response_body, created_at, expires_at)
       ${SEQ} SELECT x, ?2 || '-' || x, 'POST /x', 'h', 200, '{}', ?3, ?3 + ${DAY} FROM seq`,
    ).bind(n, tag, now - 60_000),
  ]);
}
