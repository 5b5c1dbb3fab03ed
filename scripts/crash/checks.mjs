/**
 * What must hold after a crash, a restart and the crons (issue 11, item 7). Each check
 * reads D1 through the restarted server's binding and adds a line to `violations`.
 */
import { ADMIN, call, COUPON_QUANTITY, PRODUCT_STOCK } from "./storm.mjs";

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds or `ms` pass (write-behind projections and coupon rows converge within seconds). */
/**
 * @template T
 * @param {() => Promise<T>} read
 * @param {(value: T) => boolean} ok
 * @returns {Promise<T>}
 */
async function eventually(read, ok, ms = 15_000) {
  const until = Date.now() + ms;
  let v = await read();
  while (!ok(v) && Date.now() < until) {
    await sleep(250);
    v = await read();
  }
  return v;
}

/** @typedef {{ charge: import("./storm.mjs").Ledger["charges"][number], res: import("./storm.mjs").Answer }} Retry */

/**
 * Every violation found on the restarted server's D1 (empty: all hold).
 * @param {{ url: string, d1: import("../bench/lib/fixtures.mjs").LocalD1 }} server
 * @param {import("./storm.mjs").World} world
 * @param {import("./storm.mjs").Ledger} ledger
 * @param {Retry[]} retries
 * @returns {Promise<string[]>}
 */
export async function checkAll(server, world, ledger, retries) {
  /** @type {string[]} */
  const v = [];
  const d1 = server.d1;
  /** @param {string} msg */
  const fail = (msg) => v.push(msg);

  // Every charge retried with its key: 200, and an acknowledged one replays its first answer.
  for (const { charge, res } of retries) {
    if (res.status !== 200) fail(`charge ${charge.key}: retry answered ${res.status} ${JSON.stringify(res.body)}`);
    else if (charge.acked && (!res.replayed || JSON.stringify(res.body) !== JSON.stringify(charge.body)))
      fail(`charge ${charge.key}: acknowledged, but the retry did not replay it`);
  }
  // No charge applied twice, none lost: one CHARGE row per key (amounts are unique per key).
  for (const c of ledger.charges) {
    const n = (
      await d1.first("SELECT count(*) AS n FROM point_history WHERE user_id = ? AND type = 'CHARGE' AND amount = ?", c.userId, c.amount)
    ).n;
    if (n !== 1) fail(`charge ${c.key} (${c.amount}) applied ${n} times`);
  }
  const extra = await d1.first(
    `SELECT count(*) AS n FROM point_history WHERE type = 'CHARGE' AND user_id IN (SELECT value FROM json_each(?))`,
    JSON.stringify(world.users),
  );
  if (extra.n !== ledger.charges.length) fail(`${extra.n} CHARGE rows for ${ledger.charges.length} charge keys`);

  // Each balance equals its history, and stays within 0..5,000,000.
  const balances = await d1.all(
    `SELECT b.user_id AS userId, b.balance AS balance,
       coalesce((SELECT sum(CASE h.type WHEN 'USE' THEN -h.amount ELSE h.amount END) FROM point_history h WHERE h.user_id = b.user_id), 0) AS net
     FROM user_balances b`,
  );
  for (const b of balances)
    if (b.balance !== b.net || b.balance < 0 || b.balance > 5_000_000)
      fail(`user ${b.userId}: balance ${b.balance}, history says ${b.net}`);

  // Every acknowledged write is there.
  for (const o of ledger.orders) {
    const row = await d1.first("SELECT status, user_id AS userId FROM orders WHERE id = ?", o.orderId);
    if (!row || row.userId !== o.userId || !["NOT_PAID", "PAID", "EXPIRED", "CANCELLED"].includes(row.status))
      fail(`order ${o.orderId}: acknowledged, found ${JSON.stringify(row)}`);
  }
  for (const p of ledger.payments) {
    const row = await d1.first("SELECT status FROM orders WHERE id = ?", p.orderId);
    const uses = (await d1.first("SELECT count(*) AS n FROM point_history WHERE order_id = ? AND type = 'USE'", p.orderId)).n;
    if (row?.status !== "PAID" || uses > 1) fail(`payment of order ${p.orderId}: acknowledged, order ${row?.status}, ${uses} USE rows`);
  }
  for (const c of ledger.cancels) {
    const row = await d1.first("SELECT status FROM orders WHERE id = ?", c.orderId);
    if (row?.status !== "CANCELLED") fail(`cancel of order ${c.orderId}: acknowledged, order ${row?.status}`);
  }
  const issuedTo = new Set(ledger.issues.map((i) => i.userId));
  /** @type {{ userId: number, usedAt: number | null, orderId: number | null }[]} */
  const rows = await eventually(
    () => d1.all("SELECT user_id AS userId, used_at AS usedAt, order_id AS orderId FROM user_coupons WHERE coupon_id = ?", world.couponId),
    (r) => [...issuedTo].every((u) => r.some((x) => x.userId === u)),
  );
  for (const u of issuedTo) if (!rows.some((r) => r.userId === u)) fail(`coupon issue to user ${u}: acknowledged, no user_coupons row`);

  // Coupons bounded and one per user; a used coupon belongs to a live order of its owner.
  const coupon = await d1.first("SELECT quantity, issued_quantity AS issued FROM coupons WHERE id = ?", world.couponId);
  if (rows.length > COUPON_QUANTITY || coupon.issued > coupon.quantity)
    fail(`coupon: ${rows.length} rows, issued ${coupon.issued}, quantity ${coupon.quantity}`);
  if (new Set(rows.map((r) => r.userId)).size !== rows.length) fail("coupon: a user holds it twice");
  for (const r of rows.filter((x) => x.orderId !== null)) {
    const o = await d1.first("SELECT status, user_id AS userId FROM orders WHERE id = ?", r.orderId);
    if (!o || o.userId !== r.userId || !["NOT_PAID", "PAID"].includes(o.status))
      fail(`coupon of user ${r.userId} used by order ${r.orderId} (${o?.status})`);
  }

  // Nothing half-way, every terminal order settled in its objects, and stock conserved.
  const open = await d1.first("SELECT count(*) AS n FROM orders WHERE status = 'PENDING' OR (status != 'NOT_PAID' AND closed_at IS NULL)");
  if (open.n !== 0) fail(`${open.n} orders PENDING or unsettled after the crons`);
  for (const productId of world.products) {
    const counted = () =>
      d1.first(
        `SELECT p.stock AS available,
           coalesce((SELECT sum(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE i.product_id = p.id AND o.status IN ('NOT_PAID','PAID')), 0) AS taken
         FROM products p WHERE p.id = ?`,
        productId,
      );
    const s = await eventually(counted, (x) => x.available + x.taken === PRODUCT_STOCK);
    if (s.available + s.taken !== PRODUCT_STOCK)
      fail(`product ${productId}: available ${s.available} + taken ${s.taken} != ${PRODUCT_STOCK}`);
  }
  return v;
}

/**
 * A user who arrives after the crash can still order and pay: undefined, or what went wrong.
 * @param {string} base
 * @param {import("./storm.mjs").World} world
 * @returns {Promise<string | undefined>}
 */
export async function freshUserCanBuy(base, world) {
  const u = await call(base, "POST", "/admin/users", { name: "after-crash", initialBalance: 100_000 }, ADMIN);
  if (u.status !== 201) return `fresh user: ${u.status}`;
  const userId = u.body.data.userId;
  // The storm may have sold the product out: restock one unit first (through its object).
  const r = await call(base, "PATCH", `/admin/products/${world.products[0]}/stock`, { delta: 1 }, ADMIN);
  if (r.status !== 200) return `restock: ${r.status} ${JSON.stringify(r.body)}`;
  const o = await call(base, "POST", "/orders", { userId, orderProducts: [{ productId: world.products[0], quantity: 1 }] });
  if (o.status !== 201) return `fresh order: ${o.status} ${JSON.stringify(o.body)}`;
  const p = await call(base, "POST", "/points/use", { userId, orderId: o.body.data.orderId });
  if (p.status !== 200) return `fresh payment: ${p.status} ${JSON.stringify(p.body)}`;
  return undefined;
}
