#!/usr/bin/env node
/**
 * `npm run bench:best-sellers`: the live best-seller query over 1,000,000 order items,
 * with and without its index, beside the original system's MySQL numbers.
 *
 * Data (docs/ARCHITECTURE.md §3 "Ranking and best sellers"): 1,000 products, 10,000 users, PAID orders of
 * 1 to 3 distinct products (2 on average, quantity 1 to 3) paid evenly over the last 10
 * business days (Asia/Seoul, today so far included), until there are exactly 1,000,000
 * `order_items` rows with `paid_at` set. Product popularity is Zipf-like (s = 1) and the hot
 * products rotate per business day, so the 3-day window has its own top 5. The mix comes
 * from a seeded PRNG; the script computes the expected top 5 itself and checks D1 and HTTP
 * against it.
 *
 * Loading goes into the real local D1 of the bench server (the Miniflare D1 binding the
 * Worker uses, `server.d1.raw`): one D1 batch (one transaction) per chunk of orders, two
 * statements each, `INSERT ... SELECT ... FROM json_each(?1)`. The rows travel as ONE bound
 * parameter (a JSON array of numbers, < 1 MB), so a statement stays far under D1's
 * 100-bound-parameter limit (docs/ARCHITECTURE.md §7) and under its 100 KB SQL-text limit, and SQLite
 * does the row expansion. The CHECK constraints hold by construction: amount = unit_price
 * x quantity (computed in SQL), quantity 1..3, items_amount = total_amount, discount 0,
 * status PAID with paid_at set. Orders are written in paid_at order (index appends).
 * Only what the query and the route read is written: no point history or outbox rows.
 *
 * Measured, for the window `bestSellerWindow(today)` = [start of today-3, start of today)
 * in Asia/Seoul and LIMIT 5:
 *   - the live query, `RankingsRepo.SALES_SQL` read verbatim from
 *     src/rankings/rankings.repo.ts, through the D1 binding: 1 warm-up + --runs timed runs
 *     (median/min/max of the round trip from Node, and D1's own `meta.duration`), plus its
 *     EXPLAIN QUERY PLAN; first WITH `order_items_paid_at_product_idx`, then WITHOUT it
 *     (`DROP INDEX`, same SQL text, so the route runs without it too; recreated at the end
 *     with the migration's statement, and the build time is printed)
 *   - `GET /api/v1/products/best` over HTTP, sequential requests, both ways. With no Redis
 *     configured and no D1 snapshot for today, every request runs the live query and then
 *     loads the 5 products (docs/ARCHITECTURE.md §3: Redis, then D1 snapshot, then live).
 *   - the same query over a narrow window of ~100 items (--narrow), both ways: the shape of the
 *     MySQL reference, whose indexed run processed 100 rows (its unindexed run: 1,000,000)
 *   - the route once today's D1 snapshot exists (the rows the 00:30 refresh job writes,
 *     inserted here with RankingsRepo.writeSnapshot's SQL: crons never fire in Miniflare)
 *   - floors of the same run: `SELECT 1` through the binding, `GET /health` over HTTP.
 *
 * Options: --items 1000000 --products 1000 --users 10000 --days 10 --runs 7 --http-runs 21
 *          --seed 11 --chunk-orders 10000 --narrow 100
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { APP_ROOT, startServer } from "./server.mjs";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { Checks } from "./lib/checks.mjs";
import { rng, seedUsersD1 } from "./lib/fixtures.mjs";
import { zoneOffsetMs } from "./lib/zone.mjs";

exitWithHelpIfAsked(import.meta.url);

const ITEMS = arg("items", 1_000_000);
const PRODUCTS = arg("products", 1000);
const USERS = arg("users", 10_000);
const DAYS = arg("days", 10);
const RUNS = arg("runs", 7);
const HTTP_RUNS = arg("http-runs", 21);
const SEED = arg("seed", 11);
const CHUNK_ORDERS = arg("chunk-orders", 10_000);
const NARROW = arg("narrow", 100);
const TZ = "Asia/Seoul"; // wrangler.toml BUSINESS_TIMEZONE
const TOP = 5; // BEST_SELLER_COUNT
const WINDOW_DAYS = 3; // BEST_SELLER_DAYS
const INDEX = "order_items_paid_at_product_idx";
// The original system (Spring Boot + MySQL) over 1,000,000 rows, from its write-up.
const MYSQL_REF = { without: 164, with: 3 };
const HARD_STOP_MS = 5 * 60_000;

// ---------------------------------------------------------------- the app's own query and clock

/** The live query, verbatim from the app (so this bench cannot drift from it). */
function readSalesSql() {
  const src = readFileSync(join(APP_ROOT, "src/rankings/rankings.repo.ts"), "utf8");
  const m = src.match(/static readonly SALES_SQL = `([^`]+)`/);
  if (!m) throw new Error("RankingsRepo.SALES_SQL not found in src/rankings/rankings.repo.ts");
  return m[1];
}

// Same arithmetic as src/shared/clock.ts.
/**
 * @param {number} ms
 * @param {string} timeZone
 */
function businessDate(ms, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(ms));
}
/**
 * @param {string} date
 * @param {number} days
 */
function addDays(date, days) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}
/**
 * @param {string} date
 * @param {string} timeZone
 */
function startOfBusinessDay(date, timeZone) {
  const utcMidnight = Date.parse(`${date}T00:00:00Z`);
  return utcMidnight - zoneOffsetMs(utcMidnight, timeZone);
}

// ---------------------------------------------------------------- small stats

/** @typedef {{ median: number, min: number, max: number, n: number }} Stats */
/** @param {number[]} xs */
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/**
 * @param {number[]} xs
 * @returns {Stats}
 */
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length });
/** @param {number} n */
const ms = (n) => (Number.isFinite(n) ? (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)) : "-");
/** @param {number} n */
const int = (n) => Math.round(n).toLocaleString("en-US");
/** @param {bigint} t0 */
const elapsed = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

// ---------------------------------------------------------------- run

const hardStop = setTimeout(() => {
  console.error(`[bench] best-sellers: hard stop after ${HARD_STOP_MS / 1000} s`);
  process.kill(process.pid, "SIGTERM"); // the server's exit hooks stop workerd and drop the state dir
}, HARD_STOP_MS);
hardStop.unref();

const started = process.hrtime.bigint();
const SALES_SQL = readSalesSql();
const server = await startServer();
const db = server.d1.raw;
let exitCode = 1;
try {
  printMachine({
    server: server.mode,
    "state dir": process.env.BENCH_STATE_ROOT ? `${process.env.BENCH_STATE_ROOT} (BENCH_STATE_ROOT)` : ".bench/state (disk)",
  });
  console.log(
    `\n## bench:best-sellers  items=${int(ITEMS)} products=${PRODUCTS} users=${USERS} days=${DAYS} runs=${RUNS} http-runs=${HTTP_RUNS} seed=${SEED}`,
  );

  // ---- the window, as RankingsService.bestSellerWindow computes it
  const now = Date.now();
  const today = businessDate(now, TZ);
  const win = {
    from: addDays(today, -WINDOW_DAYS),
    to: addDays(today, -1),
    fromMs: startOfBusinessDay(addDays(today, -WINDOW_DAYS), TZ),
    toMs: startOfBusinessDay(today, TZ),
  };
  const dataFrom = startOfBusinessDay(addDays(today, -(DAYS - 1)), TZ);
  const dayStarts = Array.from({ length: DAYS }, (_, d) => startOfBusinessDay(addDays(today, -(DAYS - 1) + d), TZ));

  // ---- setup: users and products (SQLite generates the rows, like seedUsersD1)
  let t0 = process.hrtime.bigint();
  const users = await seedUsersD1(server.d1, USERS);
  await db
    .prepare(
      `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
       INSERT INTO products (name, description, price, stock, created_at, updated_at)
       SELECT 'bench-product-' || n, '', 1000 + (n * 37 % 100) * 100, 1000000, ?2, ?2 FROM seq`,
    )
    .bind(PRODUCTS, now)
    .run();
  const productRows = await server.d1.all("SELECT id, price FROM products ORDER BY id");
  if (productRows.length !== PRODUCTS) throw new Error(`seeded ${productRows.length}/${PRODUCTS} products`);
  const productIds = productRows.map((r) => r.id);
  const price = new Map(productRows.map((r) => [r.id, r.price]));
  const setupMs = elapsed(t0);

  // ---- generate the orders (seeded) and the expected window totals
  t0 = process.hrtime.bigint();
  const random = rng(SEED);
  const zipfCdf = new Float64Array(PRODUCTS);
  let acc = 0;
  for (let r = 0; r < PRODUCTS; r++) zipfCdf[r] = acc += 1 / (r + 1);
  for (let r = 0; r < PRODUCTS; r++) zipfCdf[r] /= acc;
  const pickRank = () => {
    const u = random();
    let lo = 0;
    let hi = PRODUCTS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (zipfCdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  // Items per order first (1..3, truncating the last order), then times: order i is paid at
  // dataFrom + (i + 0.5) / n of the span up to now, so orders come in paid_at order.
  const perOrder = [];
  for (let left = ITEMS; left > 0; ) {
    const k = Math.min(left, 1 + Math.floor(random() * 3));
    perOrder.push(k);
    left -= k;
  }
  const nOrders = perOrder.length;
  const span = now - dataFrom;
  const orderUser = new Int32Array(nOrders);
  const orderPaidAt = new Float64Array(nOrders);
  const itemProduct = new Int32Array(ITEMS);
  const itemQty = new Int8Array(ITEMS);
  const itemOrder = new Int32Array(ITEMS);
  const windowSales = new Map();
  let inWindow = 0;
  let day = 0;
  for (let i = 0, it = 0; i < nOrders; i++) {
    const paidAt = dataFrom + Math.floor(((i + 0.5) * span) / nOrders);
    while (day + 1 < DAYS && paidAt >= dayStarts[day + 1]) day++;
    orderUser[i] = users[Math.floor(random() * users.length)];
    orderPaidAt[i] = paidAt;
    const taken = new Set();
    for (let k = 0; k < perOrder[i]; k++, it++) {
      let idx;
      do
        idx = (pickRank() + day * 97) % PRODUCTS; // hot products rotate per business day
      while (taken.has(idx));
      taken.add(idx);
      const productId = productIds[idx];
      const q = 1 + Math.floor(random() ** 2 * 3); // 1..3, mostly 1
      itemProduct[it] = productId;
      itemQty[it] = q;
      itemOrder[it] = i;
      if (paidAt >= win.fromMs && paidAt < win.toMs) {
        inWindow++;
        windowSales.set(productId, (windowSales.get(productId) ?? 0) + q);
      }
    }
  }
  // A narrow window of about NARROW items from the start of the 3-day window: the shape of the
  // MySQL reference, whose indexed run read 100 of its 1,000,000 rows.
  /** @param {number} k */
  const paidAtOfItem = (k) => orderPaidAt[itemOrder[k]];
  let k0 = 0;
  while (k0 < ITEMS && paidAtOfItem(k0) < win.fromMs) k0++;
  const narrow = { fromMs: paidAtOfItem(Math.min(k0, ITEMS - 1)), toMs: paidAtOfItem(Math.min(k0 + NARROW, ITEMS - 1)) };
  let inNarrow = 0;
  for (let k = k0; k < ITEMS && paidAtOfItem(k) < narrow.toMs; k++) inNarrow++;
  const expected = [...windowSales]
    .sort(([pa, sa], [pb, sb]) => sb - sa || pa - pb)
    .slice(0, TOP)
    .map(([productId, sales]) => ({ productId, sales }));
  const genMs = elapsed(t0);

  // ---- load: one batch (transaction) per chunk of orders; rows as one JSON parameter each
  t0 = process.hrtime.bigint();
  const ORDERS_SQL = `INSERT INTO orders (id, user_id, user_coupon_id, status, items_amount, discount_amount, total_amount,
                                          created_at, expires_at, paid_at, closed_at, updated_at)
    SELECT value ->> 0, value ->> 1, NULL, 'PAID', value ->> 2, 0, value ->> 2,
           (value ->> 3) - 60000, (value ->> 3) - 60000 + 900000, value ->> 3, NULL, value ->> 3
    FROM json_each(?1)`;
  const ITEMS_SQL = `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, paid_at)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, (value ->> 3) * (value ->> 2), value ->> 4
    FROM json_each(?1)`;
  const firstOrderId = 1 + ((await server.d1.first("SELECT COALESCE(MAX(id), 0) AS m FROM orders")).m ?? 0);
  let maxParamBytes = 0;
  let batches = 0;
  for (let i = 0, it = 0; i < nOrders; i += CHUNK_ORDERS) {
    const end = Math.min(nOrders, i + CHUNK_ORDERS);
    const orders = [];
    const items = [];
    for (let o = i; o < end; o++) {
      let itemsAmount = 0;
      for (; it < ITEMS && itemOrder[it] === o; it++) {
        const p = price.get(itemProduct[it]);
        itemsAmount += p * itemQty[it];
        items.push([firstOrderId + o, itemProduct[it], itemQty[it], p, orderPaidAt[o]]);
      }
      orders.push([firstOrderId + o, orderUser[o], itemsAmount, orderPaidAt[o]]);
    }
    const oj = JSON.stringify(orders);
    const ij = JSON.stringify(items);
    maxParamBytes = Math.max(maxParamBytes, oj.length, ij.length);
    await db.batch([db.prepare(ORDERS_SQL).bind(oj), db.prepare(ITEMS_SQL).bind(ij)]);
    batches++;
  }
  const loadMs = elapsed(t0);
  const counts = await server.d1.first(
    `SELECT (SELECT COUNT(*) FROM order_items) AS items, (SELECT COUNT(*) FROM order_items WHERE paid_at IS NOT NULL) AS paidItems,
            (SELECT COUNT(*) FROM orders WHERE status = 'PAID') AS orders,
            (SELECT COUNT(*) FROM order_items WHERE paid_at >= ?1 AND paid_at < ?2) AS inWindow,
            (SELECT COUNT(*) FROM order_items WHERE paid_at >= ?3 AND paid_at < ?4) AS inNarrow`,
    win.fromMs,
    win.toMs,
    narrow.fromMs,
    narrow.toMs,
  );
  console.log(
    `\nsetup: ${USERS} users + ${PRODUCTS} products in ${ms(setupMs)} ms; generated ${int(nOrders)} orders / ${int(ITEMS)} items in ${ms(genMs)} ms;` +
      ` loaded in ${(loadMs / 1000).toFixed(1)} s (${batches} batches of 2 INSERT ... SELECT FROM json_each(?1), 1 bound parameter each, largest ${int(maxParamBytes)} bytes;` +
      ` ${int(ITEMS / (loadMs / 1000))} items/s)`,
  );
  console.log(
    `D1: ${int(counts.items)} order_items (${int(counts.paidItems)} with paid_at), ${int(counts.orders)} PAID orders;` +
      ` window ${win.from}..${win.to} (Asia/Seoul) = [${new Date(win.fromMs).toISOString()}, ${new Date(win.toMs).toISOString()}): ${int(counts.inWindow)} items`,
  );

  // ---- measurement helpers
  const params = [win.fromMs, win.toMs, TOP];
  const narrowParams = [narrow.fromMs, narrow.toMs, TOP];
  /** @typedef {{ productId: number, sales: number }} SalesRow */
  /**
   * @param {string} sql
   * @param {unknown[]} binds
   * @returns {Promise<{ wall: Stats, d1: Stats, rows: SalesRow[] }>}
   */
  async function timeQuery(sql, binds, runs = RUNS) {
    const stmt = db.prepare(sql).bind(...binds);
    const first = await stmt.all(); // warm-up: page cache, statement cache
    const wall = [];
    const d1 = [];
    let rows = /** @type {SalesRow[]} */ (first.results);
    for (let i = 0; i < runs; i++) {
      const t = process.hrtime.bigint();
      const r = await stmt.all();
      wall.push(elapsed(t));
      d1.push(r.meta?.duration ?? NaN);
      rows = /** @type {SalesRow[]} */ (r.results);
    }
    return { wall: stats(wall), d1: stats(d1), rows };
  }
  /**
   * @param {string} sql
   * @param {unknown[]} binds
   */
  const plan = async (sql, binds) =>
    (
      await db
        .prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...binds)
        .all()
    ).results
      .map((/** @type {any} */ r) => r.detail)
      .join("; ");
  /**
   * @param {string} path
   * @returns {Promise<{ lat: Stats, statuses: Record<number, number>, last: { status: number, json: any } }>}
   */
  async function timeHttp(path) {
    const url = new URL(path, server.url);
    const get = async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
      return { status: res.status, json: await res.json() };
    };
    let last = await get(); // warm-up
    const lat = [];
    /** @type {Record<number, number>} */
    const statuses = {};
    for (let i = 0; i < HTTP_RUNS; i++) {
      const t = process.hrtime.bigint();
      last = await get();
      lat.push(elapsed(t));
      statuses[last.status] = (statuses[last.status] ?? 0) + 1;
    }
    return { lat: stats(lat), statuses, last };
  }
  /** @param {SalesRow[]} rows */
  const sameTop = (rows) =>
    JSON.stringify(rows.map((r) => [r.productId, r.sales])) === JSON.stringify(expected.map((r) => [r.productId, r.sales]));

  const c = new Checks("Checks");
  c.check(
    `D1 holds exactly ${int(ITEMS)} order_items, all with paid_at`,
    counts.items === ITEMS && counts.paidItems === ITEMS,
    `${counts.items} / ${counts.paidItems}`,
  );
  c.check("D1 items in the window == generated", counts.inWindow === inWindow, `${counts.inWindow} vs ${inWindow}`);
  c.check("D1 items in the narrow window == generated", counts.inNarrow === inNarrow, `${counts.inNarrow} vs ${inNarrow}`);

  // ---- floors
  const floor = await timeQuery("SELECT 1 AS one", [], HTTP_RUNS);
  const health = await timeHttp("/health");

  // ---- WITH the index
  const withPlan = await plan(SALES_SQL, params);
  const withQ = await timeQuery(SALES_SQL, params);
  const withHttp = await timeHttp("/api/v1/products/best");
  const withNarrow = await timeQuery(SALES_SQL, narrowParams);
  const narrowPlan = await plan(SALES_SQL, narrowParams);
  c.check("plan WITH the index uses it", withPlan.includes(INDEX), withPlan);
  c.check("live query WITH the index == expected top 5", sameTop(withQ.rows), JSON.stringify(withQ.rows));
  const body = withHttp.last.json?.data;
  c.check(
    "GET /products/best (with index): 200, expected top 5, from/to = today-3 .. today-1",
    withHttp.statuses[200] === HTTP_RUNS && sameTop(body?.bestSellers ?? []) && body?.from === win.from && body?.to === win.to,
    `${JSON.stringify(withHttp.statuses)} ${JSON.stringify({ from: body?.from, to: body?.to, top: (body?.bestSellers ?? []).map((/** @type {SalesRow} */ p) => [p.productId, p.sales]) })}`,
  );

  // ---- WITHOUT the index (dropped: same SQL text, and the route runs without it too)
  const indexSql = (await server.d1.first("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1", INDEX))?.sql;
  if (!indexSql) throw new Error(`index ${INDEX} not found`);
  await db.prepare(`DROP INDEX ${INDEX}`).run();
  const withoutPlan = await plan(SALES_SQL, params);
  const withoutQ = await timeQuery(SALES_SQL, params);
  const withoutHttp = await timeHttp("/api/v1/products/best");
  const withoutNarrow = await timeQuery(SALES_SQL, narrowParams);
  c.check(
    "narrow window: same answer with and without the index",
    JSON.stringify(withNarrow.rows) === JSON.stringify(withoutNarrow.rows) && withNarrow.rows.length > 0,
    JSON.stringify(withNarrow.rows),
  );
  c.check("plan WITHOUT the index scans order_items", !withoutPlan.includes(INDEX) && /SCAN order_items/.test(withoutPlan), withoutPlan);
  c.check("live query WITHOUT the index == expected top 5", sameTop(withoutQ.rows), JSON.stringify(withoutQ.rows));
  c.check(
    "GET /products/best (without index): 200 and the same top 5",
    withoutHttp.statuses[200] === HTTP_RUNS && sameTop(withoutHttp.last.json?.data?.bestSellers ?? []),
    JSON.stringify(withoutHttp.statuses),
  );
  t0 = process.hrtime.bigint();
  await db.prepare(indexSql).run();
  const rebuildMs = elapsed(t0);
  c.check("index recreated; the plan uses it again", (await plan(SALES_SQL, params)).includes(INDEX));

  // ---- the route with today's D1 snapshot (what readers get after the 00:30 refresh job)
  const snapAt = Date.now();
  await db.batch([
    db.prepare("DELETE FROM best_seller_snapshots WHERE business_date = ?1").bind(today),
    ...expected.map((r, i) =>
      db
        .prepare(
          `INSERT INTO best_seller_snapshots (business_date, rank, product_id, sales, from_date, to_date, created_at)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`,
        )
        .bind(today, i + 1, r.productId, r.sales, win.from, win.to, snapAt),
    ),
  ]);
  const snapHttp = await timeHttp("/api/v1/products/best");
  c.check(
    "GET /products/best (D1 snapshot): 200 and the same top 5",
    snapHttp.statuses[200] === HTTP_RUNS && sameTop(snapHttp.last.json?.data?.bestSellers ?? []),
    JSON.stringify(snapHttp.statuses),
  );

  // ---- report
  const n = `${RUNS} runs after 1 warm-up (\`SELECT 1\`: ${HTTP_RUNS})`;
  const nh = `${HTTP_RUNS} sequential requests after 1 warm-up`;
  /** @typedef {{ wall: Stats, d1: Stats }} Timed */
  /** @param {Timed} q */
  const d1Col = (q) => (Number.isFinite(q.d1.median) ? ms(q.d1.median) : "-");
  /** @param {Timed} q */
  const overQ = (q) => ms(q.wall.median - floor.wall.median);
  /** @param {{ lat: Stats }} h */
  const overH = (h) => ms(h.lat.median - health.lat.median);
  console.log(
    `\n### Best sellers: live query, ${int(ITEMS)} order items, window ${win.from}..${win.to} (${int(counts.inWindow)} items), LIMIT ${TOP}\n`,
  );
  console.log(`Narrow window: [${new Date(narrow.fromMs).toISOString()}, ${new Date(narrow.toMs).toISOString()}).\n`);
  console.log("| what | median ms | min ms | max ms | median - floor ms | D1 meta.duration median ms | MySQL reference (1,000,000 rows) |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  console.log(
    `| live query WITHOUT the index (\`DROP INDEX ${INDEX}\`), D1 binding round trip | ${ms(withoutQ.wall.median)} | ${ms(withoutQ.wall.min)} | ${ms(withoutQ.wall.max)} | ${overQ(withoutQ)} | ${d1Col(withoutQ)} | ${MYSQL_REF.without} ms |`,
  );
  console.log(
    `| live query WITH \`${INDEX}\`, D1 binding round trip | ${ms(withQ.wall.median)} | ${ms(withQ.wall.min)} | ${ms(withQ.wall.max)} | ${overQ(withQ)} | ${d1Col(withQ)} | ${MYSQL_REF.with} ms |`,
  );
  console.log(
    `| same query, narrow window (${int(counts.inNarrow)} items), WITHOUT the index | ${ms(withoutNarrow.wall.median)} | ${ms(withoutNarrow.wall.min)} | ${ms(withoutNarrow.wall.max)} | ${overQ(withoutNarrow)} | ${d1Col(withoutNarrow)} | ${MYSQL_REF.without} ms (1,000,000 rows read) |`,
  );
  console.log(
    `| same query, narrow window (${int(counts.inNarrow)} items), WITH the index | ${ms(withNarrow.wall.median)} | ${ms(withNarrow.wall.min)} | ${ms(withNarrow.wall.max)} | ${overQ(withNarrow)} | ${d1Col(withNarrow)} | ${MYSQL_REF.with} ms (100 rows read) |`,
  );
  console.log(
    `| \`SELECT 1\`, D1 binding round trip (floor) | ${ms(floor.wall.median)} | ${ms(floor.wall.min)} | ${ms(floor.wall.max)} | 0 | ${d1Col(floor)} | |`,
  );
  console.log(
    `| GET /api/v1/products/best over HTTP, WITHOUT the index | ${ms(withoutHttp.lat.median)} | ${ms(withoutHttp.lat.min)} | ${ms(withoutHttp.lat.max)} | ${overH(withoutHttp)} | | |`,
  );
  console.log(
    `| GET /api/v1/products/best over HTTP, WITH the index | ${ms(withHttp.lat.median)} | ${ms(withHttp.lat.min)} | ${ms(withHttp.lat.max)} | ${overH(withHttp)} | | |`,
  );
  console.log(
    `| GET /api/v1/products/best over HTTP, today's D1 snapshot present (no live query) | ${ms(snapHttp.lat.median)} | ${ms(snapHttp.lat.min)} | ${ms(snapHttp.lat.max)} | ${overH(snapHttp)} | | |`,
  );
  console.log(`| GET /health over HTTP (floor) | ${ms(health.lat.median)} | ${ms(health.lat.min)} | ${ms(health.lat.max)} | 0 | | |`);
  console.log(
    `\nQueries: ${n} each; HTTP: ${nh} each, one connection. Index speed-up: ${(withoutQ.wall.median / withQ.wall.median).toFixed(1)}x on the query (MySQL: ${(MYSQL_REF.without / MYSQL_REF.with).toFixed(0)}x).`,
  );
  console.log(
    "\"median - floor\": minus the same run's `SELECT 1` (queries) or `GET /health` (HTTP) median. D1 meta.duration: the SQL time Miniflare's D1 measures inside workerd (its clock, whole ms).",
  );
  console.log(`Recreating the index on ${int(ITEMS)} rows took ${ms(rebuildMs)} ms.`);
  console.log("\nEXPLAIN QUERY PLAN:");
  console.log(`- WITH the index: ${withPlan}`);
  console.log(`- WITHOUT the index: ${withoutPlan}`);
  console.log(`- narrow window, WITH the index: ${narrowPlan}`);
  console.log(`\nTop ${TOP} (productId x sales): ${expected.map((r) => `${r.productId} x ${r.sales}`).join(", ")}`);
  printLoad();
  console.log(`total run time ${(elapsed(started) / 1000).toFixed(1)} s`);
  c.print();
  exitCode = c.ok() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
