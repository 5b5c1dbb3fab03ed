#!/usr/bin/env node
/**
 * A busy shop's year of history, written straight into the SQLite file of the bench
 * server's local D1 (scripts/bench/server.mjs: Miniflare keeps it under
 * `<state dir>/d1/miniflare-D1DatabaseObject/<hash>.sqlite`), so `npm run bench:scale` can
 * measure every route and cron on a database the size of a real year instead of a near-empty one.
 *
 * Why straight into the file: through the D1 binding (one JSON parameter per batch, as
 * bench:best-sellers loads) 7,000,000 rows take many minutes; `node:sqlite` with prepared
 * multi-row INSERTs in one transaction, secondary indexes dropped during the load and rebuilt
 * sorted after it, writes them in about a minute. The file must be one a bench server created and
 * migrated (it has `_bench_migrations`, which the dev database `.wrangler/state` never has) and
 * still empty, and no server may have it open: `findD1File` + `writeHistory` check all three.
 *
 * What it writes, all FK-valid and CHECK-valid, deterministic for (sizes, --seed, --end):
 * - `users` created over the year (a fifth before it), each with its `user_balances` row equal to
 *   the sum of its point history; a few old users buy far more than the rest (skewed picks);
 * - `products` with one `product_stock_shards` row each (shard 0 loads its stock from D1 on first use);
 * - one `coupons` row per day (RATE or AMOUNT, 7 valid days), and `user_coupons` issued through
 *   the day; a user uses its newest unexpired coupon on most orders it places while it has one;
 * - `orders` placed evenly over `--days` up to 20 minutes before `--end`, PAID (85 %), EXPIRED,
 *   CANCELLED, and FAILED only in the last 6 days (the purge keeps 7), every one terminal with
 *   `closed_at` set (settled long ago); `order_items` with distinct products per order,
 *   Zipf-like popularity, `paid_at` copied from a PAID order;
 * - `point_history` in time order: a USE per PAID order with a positive total (a CHARGE first when
 *   the balance is short), plus CHARGEs spread evenly until the requested count;
 * - the events of the year in time order (`order.completed` at payment, `coupon.issued` at
 *   issuance): the newest `--outbox` as PUBLISHED `outbox` rows, the newest `--deliveries` as
 *   `event_deliveries`; `--dead-letters` of them dead-lettered (a quarter replayed since, and only
 *   those delivered); `best_seller_snapshots` of every business day whose 00:30 refresh is past;
 * - `--idempotency-keys` keys of writes in the last 24 hours before `--end`.
 *
 * Sizes: `--orders N` (default 1,000,000) scales the others unless they are given:
 * --items N --point-history 2N --user-coupons N/2 --outbox N --deliveries N --users N/10
 * --products N/1000 (at least 50) --coupons <days> --dead-letters 0.0003 N (at least 20)
 * --idempotency-keys N/100 (at least 100); also --days 365 --seed 1 --end <ISO or epoch ms>
 * (default: now, floored to the hour).
 *
 * CLI: `npx node scripts/scale/history.mjs [sizes] [--file F.sqlite | --state-dir DIR]`. Without a
 * target it starts a bench server once to create and migrate a fresh state dir (kept), writes
 * the year into its D1 file and prints how to serve it
 * (`npx node scripts/bench/server.mjs --state-dir DIR --keep-state`).
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { arg } from "../bench/lib/args.mjs";
import { fmtInt } from "../bench/lib/report.mjs";
import { rng } from "../bench/lib/fixtures.mjs";
import { APP_ROOT, ROOT } from "../bench/server.mjs";
import { zoneOffsetMs } from "../bench/lib/zone.mjs";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const MAX_BALANCE = 5_000_000; // src/db/schema.ts MAX_BALANCE
const IDEMPOTENCY_TTL_MS = DAY_MS; // src/shared/idempotency.ts
const FAILED_RETENTION_MS = 7 * DAY_MS; // src/orders/order-expiry.job.ts
const RELAY_LEASE_MS = 30_000; // src/events/outbox.relay.ts leaseMs
const BEST_SELLER_COUNT = 5; // src/rankings/rankings.service.ts
const BEST_SELLER_DAYS = 3;
const BEST_REFRESH_MINUTE = 30; // src/shared/cache-policy.ts
const COUPON_VALID_DAYS = 7;
const IDEMPOTENT_SCOPES = ["POST /api/v1/orders", "POST /api/v1/points/charge", "POST /api/v1/points/use"];

/**
 * @typedef {object} HistorySizes
 * @property {number} orders
 * @property {number} items
 * @property {number} pointHistory
 * @property {number} userCoupons
 * @property {number} outbox
 * @property {number} deliveries
 * @property {number} users
 * @property {number} products
 * @property {number} coupons
 * @property {number} deadLetters
 * @property {number} idempotencyKeys
 * @property {number} days
 */

/**
 * The sizes from the command line: `--orders` scales every size not given itself.
 * @param {(name: string, fallback: number) => number} [get] argument reader (lib/args.mjs `arg`)
 * @returns {HistorySizes}
 */
export function historySizes(get = arg) {
  const orders = get("orders", 1_000_000);
  const days = get("days", 365);
  const sizes = {
    orders,
    items: get("items", orders),
    pointHistory: get("point-history", 2 * orders),
    userCoupons: get("user-coupons", Math.round(orders / 2)),
    outbox: get("outbox", orders),
    deliveries: get("deliveries", orders),
    users: get("users", Math.max(100, Math.round(orders / 10))),
    products: get("products", Math.max(50, Math.round(orders / 1000))),
    coupons: get("coupons", days),
    deadLetters: get("dead-letters", Math.max(20, Math.round(orders * 0.0003))),
    idempotencyKeys: get("idempotency-keys", Math.max(100, Math.round(orders / 100))),
    days,
  };
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${k}: not a whole number >= 0 (${v})`);
  }
  if (sizes.orders < 1 || sizes.users < 1 || sizes.products < 1 || sizes.days < 1)
    throw new Error("--orders, --users, --products and --days must be at least 1");
  if (sizes.items < sizes.orders)
    throw new Error(`--items (${sizes.items}) must be at least --orders (${sizes.orders}): every order has a line`);
  if (Math.ceil(sizes.items / sizes.orders) > Math.min(50, sizes.products))
    throw new Error("--items / --orders lines per order exceed the distinct products (or the 50-line limit)");
  if (sizes.userCoupons > 0 && sizes.coupons < 1) throw new Error("--user-coupons needs --coupons >= 1");
  if (sizes.userCoupons > sizes.coupons * sizes.users) throw new Error("--user-coupons exceeds one per (user, coupon)");
  return sizes;
}

/**
 * A short stable key of the sizes and seed (the cache file name of bench:scale).
 * @param {HistorySizes} sizes
 * @param {number} seed
 */
export function historyKey(sizes, seed) {
  const s = sizes;
  return `o${s.orders}-i${s.items}-h${s.pointHistory}-uc${s.userCoupons}-ob${s.outbox}-d${s.deliveries}-u${s.users}-p${s.products}-c${s.coupons}-dl${s.deadLetters}-k${s.idempotencyKeys}-days${s.days}-seed${seed}`;
}

// ---------------------------------------------------------------- the D1 file of a bench state dir

/**
 * The SQLite file of the `DB` binding in a bench server's state dir (Miniflare names it by a
 * hash of the database id; there is exactly one D1 database in wrangler.toml).
 * @param {string} stateDir
 */
export function findD1File(stateDir) {
  const dir = join(stateDir, "d1", "miniflare-D1DatabaseObject");
  if (!existsSync(dir))
    throw new Error(`${dir} missing: not a bench server state dir (start one with startServer({ keepState: true }) first)`);
  const files = readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
  if (files.length !== 1) throw new Error(`expected one D1 database file in ${dir}, found ${files.length}: ${files.join(", ")}`);
  return join(dir, files[0]);
}

/**
 * Refuses anything but an empty, migrated bench D1 file: never the dev database.
 * @param {DatabaseSync} db
 * @param {string} file
 */
function assertBenchTarget(db, file) {
  const rel = relative(ROOT, resolve(file));
  if (!rel.startsWith("..") && rel.split(/[\\/]/)[0] === ".wrangler")
    throw new Error(`refusing ${file}: that is the dev database (.wrangler/state)`);
  /** @param {string} name */
  const has = (name) => db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  if (!has("_bench_migrations"))
    throw new Error(`refusing ${file}: no _bench_migrations table, so not a database the bench server migrated`);
  if (!has("orders") || !has("product_stock_shards"))
    throw new Error(`refusing ${file}: migrations incomplete (no orders / product_stock_shards)`);
  for (const t of ["users", "products", "orders", "coupons", "outbox"]) {
    const n = db.prepare(`SELECT count(*) AS n FROM ${t}`).get()?.n;
    if (n !== 0) throw new Error(`refusing ${file}: ${t} already has ${n} rows (the year goes into a freshly migrated database)`);
  }
}

// ---------------------------------------------------------------- helpers

/**
 * A bijective 32-bit mix (lowbias32): distinct inputs give distinct outputs.
 * @param {number} x
 */
function mix32(x) {
  x = Math.imul((x >>> 0) ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}
/** @param {number} n */
const hex8 = (n) => (n >>> 0).toString(16).padStart(8, "0");

/**
 * A version-4-shaped UUID for item `k` of stream `salt`, without state: the outbox and
 * event_deliveries passes get the same id for the same event. The first 8 hex digits are a
 * bijection of k, so no two items of a stream collide.
 * @param {number} seed
 * @param {number} salt
 * @param {number} k
 */
function uuidAt(seed, salt, k) {
  const a = mix32(mix32(mix32(k) ^ salt) ^ seed);
  const b = mix32(a ^ 0x9e3779b9);
  const c = mix32(b ^ 0x85ebca6b);
  const d = mix32(c ^ 0xc2b2ae35);
  const hb = hex8(b);
  const hc = hex8(c);
  return `${hex8(a)}-${hb.slice(0, 4)}-4${hb.slice(5, 8)}-${(8 | (c >>> 30)).toString(16)}${hc.slice(1, 4)}-${hc.slice(4, 8)}${hex8(d)}`;
}

/** @param {number} ms */
const iso = (ms) => new Date(ms).toISOString();

/** BUSINESS_TIMEZONE from wrangler.toml (the app's business day). */
function businessTimeZone() {
  const m = /BUSINESS_TIMEZONE\s*=\s*"([^"]+)"/.exec(readFileSync(join(APP_ROOT, "wrangler.toml"), "utf8"));
  return m?.[1] ?? "Asia/Seoul";
}

/**
 * Buffered multi-row INSERT: `rowsPerStatement` rows per prepared statement execution (one
 * native call instead of one per row), the tail through a one-row statement.
 */
class Inserter {
  /**
   * @param {DatabaseSync} db
   * @param {string} table
   * @param {string[]} columns
   */
  constructor(db, table, columns, rowsPerStatement = 64) {
    this.width = columns.length;
    this.per = Math.max(1, Math.min(rowsPerStatement, Math.floor(30_000 / this.width)));
    const one = `(${columns.map(() => "?").join(",")})`;
    const head = `INSERT INTO ${table} (${columns.join(",")}) VALUES `;
    this.many = db.prepare(head + Array.from({ length: this.per }, () => one).join(","));
    this.single = db.prepare(head + one);
    /** @type {import("node:sqlite").SQLInputValue[]} */
    this.buf = [];
    this.rows = 0;
  }
  /** @param {import("node:sqlite").SQLInputValue[]} values */
  add(...values) {
    if (values.length !== this.width) throw new Error(`insert: ${values.length} values for ${this.width} columns`);
    for (const v of values) this.buf.push(v);
    this.rows++;
    if (this.buf.length === this.per * this.width) {
      this.many.run(...this.buf);
      this.buf.length = 0;
    }
  }
  flush() {
    for (let i = 0; i < this.buf.length; i += this.width) this.single.run(...this.buf.slice(i, i + this.width));
    this.buf.length = 0;
  }
}

/** Min-heap of (time, id) pairs: payments due after their placement, popped in time order. */
class TimeHeap {
  constructor() {
    /** @type {number[]} */
    this.t = [];
    /** @type {number[]} */
    this.id = [];
  }
  get size() {
    return this.t.length;
  }
  peekTime() {
    return this.t.length > 0 ? this.t[0] : Infinity;
  }
  /**
   * @param {number} time
   * @param {number} id
   */
  push(time, id) {
    const { t, id: ids } = this;
    let i = t.length;
    t.push(time);
    ids.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] <= t[i]) break;
      [t[p], t[i]] = [t[i], t[p]];
      [ids[p], ids[i]] = [ids[i], ids[p]];
      i = p;
    }
  }
  pop() {
    const { t, id: ids } = this;
    const top = ids[0];
    const lastT = t.pop();
    const lastId = ids.pop();
    if (t.length > 0 && lastT !== undefined && lastId !== undefined) {
      t[0] = lastT;
      ids[0] = lastId;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < t.length && t[l] < t[m]) m = l;
        if (r < t.length && t[r] < t[m]) m = r;
        if (m === i) break;
        [t[m], t[i]] = [t[i], t[m]];
        [ids[m], ids[i]] = [ids[i], ids[m]];
        i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------- the year

/**
 * Writes the year into `file` (an empty, migrated bench D1 file that no process has open).
 * @param {string} file
 * @param {{ sizes: HistorySizes, seed?: number, end?: number, log?: (line: string) => void }} options
 * @returns {{ seconds: number, rows: number, rowsPerSecond: number, counts: Record<string, number>, end: number, start: number,
 *   heaviest: { pointHistoryUser: number, pointHistoryRows: number, couponUser: number, coupons: number } }}
 */
export function writeHistory(file, { sizes, seed = 1, end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS, log = (l) => console.error(l) }) {
  const S = sizes;
  const started = performance.now();
  const rand = rng(seed);
  const db = new DatabaseSync(file, { enableForeignKeyConstraints: false });
  try {
    assertBenchTarget(db, file);
    // The load is one transaction on a file nobody else has open: no WAL (it would double every
    // page write), rollback journal in memory, no fsync until the end, a large page cache.
    db.exec(
      "PRAGMA journal_mode = DELETE; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA cache_size = -524288; PRAGMA temp_store = MEMORY;",
    );
    // Secondary indexes are rebuilt after the load (a sorted build instead of random inserts).
    const indexes = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all();
    db.exec("BEGIN");
    for (const { name } of indexes) db.exec(`DROP INDEX "${name}"`);

    const span = S.days * DAY_MS;
    const start = end - span;
    const lastPlacement = end - 20 * 60_000; // every order is terminal and settled by `end`
    const ttlMs = 900_000; // wrangler.toml ORDER_PAYMENT_TTL_SECONDS
    const tz = businessTimeZone();
    const tzOff = zoneOffsetMs(end, tz);
    /** @param {number} ms */
    const bday = (ms) => Math.floor((ms + tzOff) / DAY_MS);
    const firstDay = bday(start);
    const nDays = bday(end) - firstDay + 1;
    /** @type {Record<string, number>} table -> rows written */
    const counts = {};
    const t0 = performance.now();

    // ------------------------------------------------ users (ids 1..U, created before their first pick)
    const U = S.users;
    const oldUsers = Math.max(1, Math.floor(U * 0.2));
    const joinSpan = span * 0.95;
    const userCreated = new Float64Array(U + 1);
    for (let u = 1; u <= U; u++) {
      userCreated[u] =
        u <= oldUsers
          ? start - Math.floor(rand() * 90 * DAY_MS) - 1000
          : start + Math.floor(((u - oldUsers) / Math.max(1, U - oldUsers)) * joinSpan);
    }
    /** Users that exist at `t`: 1..k, k the largest id created at or before t. */
    /** @param {number} t */
    const usersAt = (t) => {
      let k = t < start ? oldUsers : Math.min(U, oldUsers + Math.floor(((t - start) / joinSpan) * Math.max(1, U - oldUsers)));
      while (k < U && userCreated[k + 1] <= t) k++;
      while (k > 1 && userCreated[k] > t) k--;
      return k;
    };
    // Old users buy far more (a few whales, a long tail).
    /** @param {number} t */
    const pickUser = (t) => 1 + Math.floor(usersAt(t) * rand() ** 1.5);
    const users = new Inserter(db, "users", ["id", "name", "created_at"]);
    for (let u = 1; u <= U; u++) users.add(u, `user-${u}`, userCreated[u]);
    users.flush();
    counts.users = users.rows;

    // ------------------------------------------------ products (one stock shard each)
    const P = S.products;
    const price = new Int32Array(P + 1);
    const products = new Inserter(db, "products", [
      "id",
      "name",
      "description",
      "price",
      "stock",
      "stock_shards",
      "created_at",
      "updated_at",
    ]);
    const shards = new Inserter(db, "product_stock_shards", ["product_id", "shard", "available", "stamp"]);
    for (let p = 1; p <= P; p++) {
      price[p] = 1000 + 100 * Math.floor(rand() * 990);
      const stock = 1000 + Math.floor(rand() * 9000);
      const created = start - 30 * DAY_MS + p * 1000;
      const updated = end - Math.floor(rand() * 3 * DAY_MS);
      products.add(p, `product-${p}`, `A product of the busy shop (#${p}).`, price[p], stock, 1, created, updated);
      shards.add(p, 0, stock, updated);
    }
    products.flush();
    shards.flush();
    counts.products = products.rows;
    counts.product_stock_shards = shards.rows;
    /** Zipf-like popularity: low ids sell most. */
    const pickProduct = () => 1 + Math.floor(P * rand() ** 2.5);

    // ------------------------------------------------ coupons (one window per day by default)
    const C = S.coupons;
    const couponType = new Uint8Array(C + 1); // 0 RATE, 1 AMOUNT
    const couponValue = new Int32Array(C + 1);
    const couponIssued = new Int32Array(C + 1);
    /** @param {number} c */
    const couponStart = (c) => start + Math.floor(((c - 1) * span) / Math.max(1, C));
    for (let c = 1; c <= C; c++) {
      couponType[c] = c % 3 === 0 ? 1 : 0;
      couponValue[c] = couponType[c] === 1 ? 1000 + 500 * Math.floor(rand() * 9) : 5 + Math.floor(rand() * 26);
    }

    // ------------------------------------------------ the timeline: placements, payments, issuances, charges
    const N = S.orders;
    const UC = S.userCoupons;
    const H = S.pointHistory;
    const ucUser = new Int32Array(UC + 1);
    const ucCoupon = new Int32Array(UC + 1);
    const ucIssued = new Float64Array(UC + 1);
    const ucUsedAt = new Float64Array(UC + 1); // 0: unused
    const ucOrder = new Int32Array(UC + 1);
    const owned = new Set(); // (coupon, user) pairs issued
    const lastUc = new Int32Array(U + 1); // the user's newest coupon
    const lastUcFree = new Uint8Array(U + 1);
    const balance = new Int32Array(U + 1);
    const historyOf = new Int32Array(U + 1); // point_history rows per user
    const lastActive = new Float64Array(U + 1);

    const orderUser = new Int32Array(N + 1);
    const orderUc = new Int32Array(N + 1);
    const orderItems = new Int32Array(N + 1);
    const orderDiscount = new Int32Array(N + 1);
    const orderPaidAt = new Float64Array(N + 1); // 0: not paid
    const itemStart = new Int32Array(N + 2);
    const itemProduct = new Int32Array(S.items + 1);
    const itemQty = new Uint16Array(S.items + 1);
    const sales = new Int32Array(nDays * (P + 1)); // paid units per business day and product

    const eventRef = new Int32Array(N + UC); // +orderId (order.completed) or -userCouponId (coupon.issued)
    const eventTime = new Float64Array(N + UC);
    let events = 0;

    const orders = new Inserter(
      db,
      "orders",
      [
        "id",
        "user_id",
        "user_coupon_id",
        "status",
        "items_amount",
        "discount_amount",
        "total_amount",
        "created_at",
        "expires_at",
        "paid_at",
        "closed_at",
        "updated_at",
      ],
      32,
    );
    const items = new Inserter(db, "order_items", [
      "id",
      "order_id",
      "product_id",
      "quantity",
      "unit_price",
      "amount",
      "paid_at",
      "stock_shard",
    ]);
    const history = new Inserter(db, "point_history", ["user_id", "type", "amount", "balance_after", "order_id", "created_at"]);
    /** @type {Record<string, number>} */
    const statusCount = { PAID: 0, EXPIRED: 0, CANCELLED: 0, FAILED: 0 };

    let lastHistoryAt = start;
    /**
     * @param {number} u
     * @param {number} amount
     * @param {number} at
     */
    const charge = (u, amount, at) => {
      balance[u] += amount;
      historyOf[u]++;
      lastHistoryAt = Math.max(lastHistoryAt, at);
      history.add(u, "CHARGE", amount, balance[u], null, at);
      lastActive[u] = Math.max(lastActive[u], at);
    };
    /** A top-up by some user who exists at `t` (skipped when every try would pass the balance cap). */
    /** @param {number} t */
    const extraCharge = (t) => {
      for (let tries = 0; tries < 8; tries++) {
        const u = pickUser(t);
        const amount = 10_000 * (1 + Math.floor(rand() * 10));
        if (balance[u] + amount > MAX_BALANCE) continue;
        charge(u, amount, t);
        return true;
      }
      return false;
    };

    const pending = new TimeHeap();
    /** @param {number} orderId */
    const pay = (orderId) => {
      const u = orderUser[orderId];
      const at = orderPaidAt[orderId];
      const total = orderItems[orderId] - orderDiscount[orderId];
      if (total > 0) {
        if (balance[u] < total) {
          const need = total - balance[u];
          const amount = Math.min(MAX_BALANCE - balance[u], Math.ceil(need / 10_000) * 10_000 + 10_000 * Math.floor(rand() * 5));
          // Just before paying, but never before a row already written (ids follow time).
          charge(u, amount, Math.max(lastHistoryAt, at - 1_000 - Math.floor(rand() * 60_000)));
        }
        balance[u] -= total;
        historyOf[u]++;
        history.add(u, "USE", total, balance[u], orderId, at);
        lastHistoryAt = Math.max(lastHistoryAt, at);
      }
      lastActive[u] = Math.max(lastActive[u], at);
      for (let k = itemStart[orderId]; k < itemStart[orderId + 1]; k++)
        sales[(bday(at) - firstDay) * (P + 1) + itemProduct[k]] += itemQty[k];
      eventRef[events] = orderId;
      eventTime[events++] = at;
    };

    const linesBase = Math.floor(S.items / N);
    const linesRem = S.items - linesBase * N;
    const orderSlot = (lastPlacement - start) / N;
    const issueSlot = UC > 0 ? (end - 60_000 - start) / UC : Infinity;
    let nextItem = 1;
    let i = 0; // orders placed
    let j = 0; // coupons issued
    // Instants are whole epoch milliseconds (INTEGER columns).
    let nextOrderAt = Math.floor(start + rand() * orderSlot);
    let nextIssueAt = UC > 0 ? Math.floor(start + rand() * issueSlot) : Infinity;
    const lineProducts = new Set();

    while (i < N || j < UC || pending.size > 0) {
      const tPay = pending.peekTime();
      const t = Math.min(nextOrderAt, nextIssueAt, tPay);
      if (t === tPay) {
        pay(pending.pop());
      } else if (t === nextIssueAt) {
        // ---- a coupon issuance: today's coupon, to a user who does not hold it yet
        const id = ++j;
        const c = Math.min(C, 1 + Math.floor(((t - start) / span) * C));
        let u = 0;
        for (let tries = 0; tries < 50 && u === 0; tries++) {
          const cand = pickUser(t);
          if (!owned.has(c * (U + 1) + cand)) u = cand;
        }
        if (u === 0) {
          const k = usersAt(t);
          for (let cand = 1; cand <= k && u === 0; cand++) if (!owned.has(c * (U + 1) + cand)) u = cand;
          if (u === 0) throw new Error(`coupon ${c}: every user that exists at ${iso(t)} holds it; raise --users or --coupons`);
        }
        owned.add(c * (U + 1) + u);
        ucUser[id] = u;
        ucCoupon[id] = c;
        ucIssued[id] = Math.max(t, couponStart(c));
        couponIssued[c]++;
        lastUc[u] = id;
        lastUcFree[u] = 1;
        lastActive[u] = Math.max(lastActive[u], t);
        eventRef[events] = -id;
        eventTime[events++] = ucIssued[id];
        nextIssueAt = j < UC ? Math.floor(start + (j + rand()) * issueSlot) : Infinity;
      } else {
        // ---- an order placement (ids in placement order)
        const id = ++i;
        const u = pickUser(t);
        orderUser[id] = u;
        const nLines = linesBase + (Math.floor((id * linesRem) / N) - Math.floor(((id - 1) * linesRem) / N));
        lineProducts.clear();
        itemStart[id] = nextItem;
        let amount = 0;
        while (lineProducts.size < nLines) {
          const p = lineProducts.size < nLines && lineProducts.size < P / 2 ? pickProduct() : 1 + Math.floor(rand() * P);
          if (lineProducts.has(p)) continue;
          lineProducts.add(p);
          const q = rand() < 0.7 ? 1 : 2 + Math.floor(rand() * 2);
          itemProduct[nextItem] = p;
          itemQty[nextItem] = q;
          amount += price[p] * q;
          nextItem++;
        }
        itemStart[id + 1] = nextItem;
        orderItems[id] = amount;

        const r = rand();
        let status = r < 0.85 ? "PAID" : r < 0.94 ? "EXPIRED" : "CANCELLED";
        if (r > 0.997 && t > end - FAILED_RETENTION_MS + DAY_MS) status = "FAILED";
        const uc = lastUc[u];
        let discount = 0;
        if (
          status !== "FAILED" &&
          uc !== 0 &&
          lastUcFree[u] === 1 &&
          ucIssued[uc] <= t &&
          ucIssued[uc] + COUPON_VALID_DAYS * DAY_MS > t &&
          rand() < 0.7
        ) {
          orderUc[id] = uc;
          const c = ucCoupon[uc];
          discount = couponType[c] === 1 ? Math.min(couponValue[c], amount) : Math.floor((amount * couponValue[c]) / 100);
          if (status === "PAID") {
            // Used for good; an expired or cancelled order gave its coupon back.
            lastUcFree[u] = 0;
            ucUsedAt[uc] = t;
            ucOrder[uc] = id;
          }
        }
        orderDiscount[id] = discount;
        const expires = t + ttlMs;
        let paidAt = null;
        let updated;
        if (status === "PAID") {
          paidAt = t + 5_000 + Math.floor(rand() * 600_000);
          updated = paidAt;
          orderPaidAt[id] = paidAt;
          pending.push(paidAt, id);
        } else if (status === "EXPIRED") updated = expires + Math.floor(rand() * 60_000);
        else if (status === "CANCELLED") updated = t + 30_000 + Math.floor(rand() * 600_000);
        else updated = t + 120_000 + Math.floor(rand() * 60_000);
        const closed = updated + 200 + Math.floor(rand() * 2_000);
        statusCount[status]++;
        orders.add(id, u, orderUc[id] || null, status, amount, discount, amount - discount, t, expires, paidAt, closed, updated);
        for (let k = itemStart[id]; k < itemStart[id + 1]; k++) {
          const p = itemProduct[k];
          items.add(k, id, p, itemQty[k], price[p], price[p] * itemQty[k], paidAt, 0);
        }
        lastActive[u] = Math.max(lastActive[u], t);
        nextOrderAt = i < N ? Math.floor(start + (i + rand()) * orderSlot) : Infinity;
      }
      // Top-ups spread evenly: history so far tracks the share of the year gone.
      const due = Math.floor(((t - start) / span) * H);
      while (history.rows < due && extraCharge(t));
    }
    for (let tries = 0; history.rows < H && tries < 4 * H; tries++)
      extraCharge(Math.max(lastHistoryAt, Math.floor(lastPlacement + rand() * (end - lastPlacement))));
    orders.flush();
    items.flush();
    history.flush();
    counts.orders = orders.rows;
    counts.order_items = items.rows;
    counts.point_history = history.rows;
    log(
      `[history] timeline: ${fmtInt(N)} orders (${Object.entries(statusCount)
        .map(([k, v]) => `${k} ${fmtInt(v)}`)
        .join(
          ", ",
        )}), ${fmtInt(items.rows)} items, ${fmtInt(history.rows)} point rows, ${fmtInt(j)} issuances in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // ------------------------------------------------ balances, coupons, user coupons
    const balances = new Inserter(db, "user_balances", ["user_id", "balance", "updated_at"]);
    for (let u = 1; u <= U; u++) balances.add(u, balance[u], Math.max(userCreated[u], lastActive[u]));
    balances.flush();
    counts.user_balances = balances.rows;
    const coupons = new Inserter(db, "coupons", [
      "id",
      "name",
      "discount_type",
      "discount_value",
      "quantity",
      "issued_quantity",
      "starts_at",
      "ends_at",
      "valid_days",
      "shards",
      "created_at",
    ]);
    for (let c = 1; c <= C; c++) {
      const from = couponStart(c);
      const to = c === C ? end : couponStart(c + 1);
      const quantity = Math.max(1, couponIssued[c] + Math.floor(couponIssued[c] * 0.2 * rand()));
      coupons.add(
        c,
        `coupon-${iso(from).slice(0, 10)}`,
        couponType[c] ? "AMOUNT" : "RATE",
        couponValue[c],
        quantity,
        couponIssued[c],
        from,
        Math.max(to, from + 1),
        COUPON_VALID_DAYS,
        1,
        from - DAY_MS,
      );
    }
    coupons.flush();
    counts.coupons = coupons.rows;
    const userCoupons = new Inserter(db, "user_coupons", ["id", "user_id", "coupon_id", "issued_at", "expires_at", "used_at", "order_id"]);
    let couponUser = 0;
    const held = new Int32Array(U + 1);
    for (let id = 1; id <= UC; id++) {
      userCoupons.add(
        id,
        ucUser[id],
        ucCoupon[id],
        ucIssued[id],
        ucIssued[id] + COUPON_VALID_DAYS * DAY_MS,
        ucOrder[id] ? ucUsedAt[id] : null,
        ucOrder[id] || null,
      );
      if (++held[ucUser[id]] > held[couponUser]) couponUser = ucUser[id];
    }
    userCoupons.flush();
    counts.user_coupons = userCoupons.rows;

    // ------------------------------------------------ events: outbox, dead letters, deliveries
    /** @param {number} k */
    const eventIdOf = (k) =>
      eventRef[k] > 0 ? uuidAt(seed, 0x6f726465, eventRef[k]) : `coupon.issued:${ucCoupon[-eventRef[k]]}:${ucUser[-eventRef[k]]}`;
    /** @param {number} k */
    const publishedAt = (k) => eventTime[k] + 300 + (mix32(k ^ seed) % 2_000);
    /** @param {number} k */
    const payloadOf = (k) => {
      const ref = eventRef[k];
      if (ref > 0) {
        const lines = [];
        for (let x = itemStart[ref]; x < itemStart[ref + 1]; x++) {
          const p = itemProduct[x];
          lines.push({ productId: p, quantity: itemQty[x], unitPrice: price[p], amount: price[p] * itemQty[x] });
        }
        const paidAt = iso(orderPaidAt[ref]);
        return JSON.stringify({
          eventId: eventIdOf(k),
          type: "order.completed",
          version: 1,
          occurredAt: paidAt,
          order: {
            orderId: ref,
            userId: orderUser[ref],
            userCouponId: orderUc[ref] || null,
            items: lines,
            itemsAmount: orderItems[ref],
            discountAmount: orderDiscount[ref],
            totalAmount: orderItems[ref] - orderDiscount[ref],
            paidAt,
          },
        });
      }
      const uc = -ref;
      const issuedAt = iso(ucIssued[uc]);
      return JSON.stringify({
        eventId: eventIdOf(k),
        type: "coupon.issued",
        version: 1,
        occurredAt: issuedAt,
        issuance: {
          couponId: ucCoupon[uc],
          userId: ucUser[uc],
          userCouponId: uc,
          issuedAt,
          expiresAt: iso(ucIssued[uc] + COUPON_VALID_DAYS * DAY_MS),
        },
      });
    };
    /** @param {number} k */
    const typeOf = (k) => (eventRef[k] > 0 ? "order.completed" : "coupon.issued");
    /** @param {number} k */
    const aggregateOf = (k) => String(eventRef[k] > 0 ? eventRef[k] : ucCoupon[-eventRef[k]]);
    const outboxFrom = Math.max(0, events - S.outbox);
    const outbox = new Inserter(
      db,
      "outbox",
      [
        "id",
        "event_id",
        "type",
        "aggregate_id",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "published_at",
      ],
      32,
    );
    for (let k = outboxFrom; k < events; k++) {
      outbox.add(
        k - outboxFrom + 1,
        eventIdOf(k),
        typeOf(k),
        aggregateOf(k),
        payloadOf(k),
        "PUBLISHED",
        1,
        eventTime[k] + 200 + RELAY_LEASE_MS,
        null,
        eventTime[k],
        publishedAt(k),
      );
    }
    outbox.flush();
    counts.outbox = outbox.rows;

    // Dead letters: events spread over the outbox window, kept until an admin replays them; a
    // quarter of those of the last week replayed (and delivered) since. Older replayed ones are
    // gone: the retention cron deletes replayed dead letters after EVENT_RETENTION_DAYS (7).
    const dead = new Map(); // event index -> replayed_at | 0
    const windowSize = events - outboxFrom;
    const nDead = Math.min(S.deadLetters, windowSize);
    for (let d = 0; d < nDead; d++) {
      const k = outboxFrom + Math.floor(((d + rand()) * windowSize) / nDead);
      const replay = rand() < 0.25 ? publishedAt(k) + HOUR_MS + Math.floor(rand() * DAY_MS) : 0;
      dead.set(k, replay > end - 7 * DAY_MS && replay < end ? replay : 0);
    }
    const deadLetters = new Inserter(
      db,
      "dead_letters",
      ["id", "event_id", "type", "payload", "attempts", "created_at", "replayed_at"],
      32,
    );
    let deadId = 0;
    for (const [k, replayed] of [...dead].sort((a, b) => a[0] - b[0])) {
      deadLetters.add(
        ++deadId,
        eventIdOf(k),
        typeOf(k),
        payloadOf(k),
        6,
        publishedAt(k) + 60_000 + Math.floor(rand() * 60_000),
        replayed || null,
      );
    }
    deadLetters.flush();
    counts.dead_letters = deadLetters.rows;

    // Deliveries: the newest events the data platform took (a dead letter only once replayed).
    let deliveredFrom = events;
    for (let n = 0; deliveredFrom > 0 && n < S.deliveries; ) {
      deliveredFrom--;
      if (dead.get(deliveredFrom) !== 0) n++;
    }
    const deliveries = new Inserter(db, "event_deliveries", ["event_id", "type", "delivered_at"]);
    for (let k = deliveredFrom; k < events; k++) {
      const replayed = dead.get(k);
      if (replayed === 0) continue;
      deliveries.add(eventIdOf(k), typeOf(k), (replayed ?? publishedAt(k)) + 100 + (mix32(k) % 3_000));
    }
    deliveries.flush();
    counts.event_deliveries = deliveries.rows;

    // ------------------------------------------------ best-seller snapshots (each past 00:30 refresh)
    const snapshots = new Inserter(db, "best_seller_snapshots", [
      "business_date",
      "rank",
      "product_id",
      "sales",
      "from_date",
      "to_date",
      "created_at",
    ]);
    /** @param {number} day */
    const dateOf = (day) => new Date(day * DAY_MS).toISOString().slice(0, 10);
    const totals = new Int32Array(P + 1);
    for (let d = BEST_SELLER_DAYS; d < nDays; d++) {
      const refreshAt = (firstDay + d) * DAY_MS - tzOff + BEST_REFRESH_MINUTE * 60_000;
      if (refreshAt > end) break;
      totals.fill(0);
      for (let back = 1; back <= BEST_SELLER_DAYS; back++) for (let p = 1; p <= P; p++) totals[p] += sales[(d - back) * (P + 1) + p];
      const top = [];
      for (let p = 1; p <= P; p++) {
        if (totals[p] === 0) continue;
        top.push(p);
        top.sort((a, b) => totals[b] - totals[a] || a - b);
        if (top.length > BEST_SELLER_COUNT) top.pop();
      }
      for (const [rank, p] of top.entries())
        snapshots.add(
          dateOf(firstDay + d),
          rank + 1,
          p,
          totals[p],
          dateOf(firstDay + d - BEST_SELLER_DAYS),
          dateOf(firstDay + d - 1),
          refreshAt + 1_000,
        );
    }
    snapshots.flush();
    counts.best_seller_snapshots = snapshots.rows;

    // ------------------------------------------------ idempotency keys of the last 24 hours
    const keys = new Inserter(
      db,
      "idempotency_keys",
      ["user_id", "key", "scope", "request_hash", "status_code", "response_body", "created_at", "expires_at"],
      32,
    );
    for (let k = 0; k < S.idempotencyKeys; k++) {
      const at = end - IDEMPOTENCY_TTL_MS + Math.floor(((k + rand()) * IDEMPOTENCY_TTL_MS) / S.idempotencyKeys);
      const u = pickUser(at);
      const scope = IDEMPOTENT_SCOPES[k % IDEMPOTENT_SCOPES.length];
      const hash = uuidAt(seed, 0x68617368, k).replaceAll("-", "") + uuidAt(seed, 0x68617369, k).replaceAll("-", "");
      const status = scope === "POST /api/v1/orders" ? 201 : 200;
      const body = JSON.stringify({ code: status === 201 ? "CREATED" : "OK", message: "ok", data: { userId: u } });
      keys.add(u, uuidAt(seed, 0x6b657973, k), scope, hash, status, body, at, at + IDEMPOTENCY_TTL_MS);
    }
    keys.flush();
    counts.idempotency_keys = keys.rows;

    const tIndex = performance.now();
    for (const { sql } of indexes) db.exec(String(sql));
    const indexSeconds = (performance.now() - tIndex) / 1000;
    db.exec("COMMIT");
    log(`[history] ${indexes.length} secondary indexes rebuilt in ${indexSeconds.toFixed(1)} s`);

    // Proof, not trust: every foreign key resolves and every table holds what was reported.
    const tCheck = performance.now();
    const fk = db.prepare("PRAGMA foreign_key_check").all();
    if (fk.length > 0) throw new Error(`foreign_key_check: ${fk.length} violations, first ${JSON.stringify(fk[0])}`);
    for (const [table, n] of Object.entries(counts)) {
      const got = db.prepare(`SELECT count(*) AS n FROM ${table}`).get()?.n;
      if (got !== n) throw new Error(`${table}: ${got} rows in the file, ${n} written`);
    }
    log(`[history] foreign_key_check and row counts verified in ${((performance.now() - tCheck) / 1000).toFixed(1)} s`);
    // Back to what workerd's D1 uses.
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const rows = Object.values(counts).reduce((a, b) => a + b, 0);
    const seconds = (performance.now() - started) / 1000;
    let historyUser = 1;
    for (let u = 1; u <= U; u++) if (historyOf[u] > historyOf[historyUser]) historyUser = u;
    return {
      seconds,
      rows,
      rowsPerSecond: rows / seconds,
      counts,
      start,
      end,
      heaviest: { pointHistoryUser: historyUser, pointHistoryRows: historyOf[historyUser], couponUser, coupons: held[couponUser] },
    };
  } catch (err) {
    try {
      db.exec("ROLLBACK");
    } catch {
      /* no transaction open */
    }
    throw err;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------- CLI

async function main() {
  const sizes = historySizes();
  const seed = arg("seed", 1);
  const endArg = arg("end", "");
  const end = endArg === "" ? undefined : /^\d+$/.test(String(endArg)) ? Number(endArg) : Date.parse(String(endArg));
  if (end !== undefined && !Number.isFinite(end)) throw new Error(`--end: not an ISO date or epoch ms: ${endArg}`);
  let file = arg("file", "");
  let stateDir = arg("state-dir", "");
  if (!file) {
    if (!stateDir) {
      const { startServer } = await import("../bench/server.mjs");
      const server = await startServer({ keepState: true, quiet: true });
      stateDir = server.stateDir;
      await server.stop();
      console.error(`[history] created and migrated bench state dir ${stateDir}`);
    }
    file = findD1File(stateDir);
  }
  console.error(`[history] writing ${historyKey(sizes, seed)} into ${file}`);
  const r = writeHistory(file, { sizes, seed, end });
  const bytes = statSync(file).size;
  console.log(
    `history: ${fmtInt(r.rows)} rows in ${r.seconds.toFixed(1)} s = ${fmtInt(r.rowsPerSecond)} rows/s; file ${(bytes / 2 ** 20).toFixed(0)} MiB; ${iso(r.start)} .. ${iso(r.end)}`,
  );
  for (const [t, n] of Object.entries(r.counts)) console.log(`  ${t}: ${fmtInt(n)}`);
  console.log(`history seconds=${r.seconds.toFixed(1)} rows=${r.rows} rows_per_s=${Math.round(r.rowsPerSecond)} bytes=${bytes}`);
  if (stateDir) console.log(`serve it: npx node scripts/bench/server.mjs --state-dir ${stateDir} --keep-state`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
