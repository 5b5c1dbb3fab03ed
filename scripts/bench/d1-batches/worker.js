/**
 * The Worker of `npm run bench:d1-batches` (scripts/bench/d1-batches.mjs): times D1 batches of the
 * shapes placement sends, from inside workerd (the clock moves across the awaited batch). Each
 * statement below is shaped like its counterpart in src/orders/orders.repo.ts at issue 18 (the
 * attempt's INSERT with its SQL guards, the lines' INSERT ... RETURNING, the coupon read, the
 * commit's flip); it is a cost model of those shapes, not a test of the repo.
 */
const ATTEMPT_INSERT = `INSERT INTO orders (user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at, idempotency_key)
 SELECT ?1, ?2, 'PENDING', 0, 0, 0, ?3, ?4, ?3, NULL
 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
   AND (SELECT count(*) FROM products WHERE id IN (SELECT json_extract(value, '$.p') FROM json_each(?5))) = json_array_length(?5)
   AND (?2 IS NULL OR EXISTS (SELECT 1 FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
     WHERE uc.id = ?2 AND uc.user_id = ?1 AND uc.used_at IS NULL AND ?3 < uc.expires_at AND ?3 >= uc.issued_at AND ?3 >= c.starts_at))`;
/** The one-write alternative (issue 18 item 2): the order goes in NOT_PAID with its amounts, after the reservations. */
const SINGLE_INSERT = ATTEMPT_INSERT.replace("'PENDING', 0, 0, 0", "'NOT_PAID', ?6, 0, ?6");
const ITEMS = `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, stock_shard)
 SELECT o.id, p.id, json_extract(l.value, '$.q'), p.price, p.price * json_extract(l.value, '$.q'), o.id % p.stock_shards
 FROM (SELECT id FROM orders WHERE user_id = ?1 AND changes() > 0 ORDER BY id DESC LIMIT 1) o, json_each(?2) l
   JOIN products p ON p.id = json_extract(l.value, '$.p')
 RETURNING order_id AS orderId, product_id AS productId, quantity, unit_price AS unitPrice, amount, stock_shard AS stockShard,
   (SELECT stock_shards FROM products WHERE id = product_id) AS stockShards`;
const COUPON = `SELECT c.discount_type AS discountType, c.discount_value AS discountValue
 FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = ?1`;
const COMMIT = `UPDATE orders SET status = 'NOT_PAID', items_amount = ?1, discount_amount = ?2, total_amount = ?3, expires_at = ?4, updated_at = ?5
 WHERE id = ?6 AND status = 'PENDING' RETURNING id`;

let userSeq = 0;
let commitSeq = 0;

/** The statements of one request of `variant`. */
function statementsOf(db, variant, r, now) {
  const user = 1 + (userSeq++ % 1000);
  const lines = JSON.stringify([
    { p: 1 + (r % 5), q: 1 },
    { p: 1 + ((r + 1) % 5), q: 2 },
  ]);
  switch (variant) {
    case "empty":
      return [db.prepare("SELECT 1")];
    case "attempt":
      return [
        db.prepare(ATTEMPT_INSERT).bind(user, null, now, now + 600_000, lines),
        db.prepare(ITEMS).bind(user, lines),
        db.prepare(COUPON).bind(null),
      ];
    case "commit":
      // The attempts of the run before left PENDING orders 1, 2, ...: each commit flips the next one.
      return [db.prepare(COMMIT).bind(300, 0, 300, now + 600_000, now, ++commitSeq)];
    case "single":
      return [
        db.prepare(SINGLE_INSERT).bind(user, null, now, now + 600_000, lines, 300),
        db.prepare(ITEMS).bind(user, lines),
        db.prepare(COUPON).bind(null),
      ];
    default:
      throw new Error(`unknown variant ${variant}`);
  }
}

export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const db = env.DB;
    if (url.pathname === "/sql") {
      await db.batch((await req.json()).map((s) => db.prepare(s)));
      return new Response("ok");
    }
    const variant = url.searchParams.get("variant");
    const size = Number(url.searchParams.get("size"));
    const batches = Number(url.searchParams.get("batches"));
    const now = Date.now();
    const started = Date.now();
    for (let b = 0; b < batches; b++) {
      const statements = [];
      for (let r = 0; r < size; r++) statements.push(...statementsOf(db, variant, r, now));
      await db.batch(statements);
    }
    const ms = Date.now() - started;
    return Response.json({ variant, size, batches, ms, msPerBatch: ms / batches, msPerRequest: ms / (batches * size) });
  },
};
