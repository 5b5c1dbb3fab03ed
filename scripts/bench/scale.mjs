#!/usr/bin/env node
/**
 * `npm run bench:scale`: every public route, the admin list routes and every cron job, near
 * empty and on a year of a busy shop's history, side by side: D1 rows read, rows written
 * and milliseconds, with the year / near-empty ratio. Whatever reads more rows as the tables
 * grow (a scan, an unbounded list, an OFFSET) shows as a ratio far above 1.
 *
 * Two servers (scripts/bench/server.mjs, the production-like one), one bundle, up at the same time:
 *   1. near empty: freshly migrated D1, then the bench's small seed (below);
 *   2. the year: a fresh state dir whose D1 file holds scripts/scale/history.mjs's year
 *      (default 1,000,000 orders, 2,000,000 point rows, ...; `--orders N` scales it), then the
 *      same seed on top. The year is generated once per size and seed and kept under
 *      .bench/scale/<key>.sqlite (git-ignored); a later run copies it in (seconds) while it is
 *      younger than --max-cache-age-hours (6: the history ends at the hour it was made, and
 *      "today's" sales and the last day's idempotency keys age with it). --no-cache regenerates.
 * Every route is called on both in lockstep, alternating call by call (and which goes first):
 * other processes on this shared machine then slow both columns alike, where measuring one
 * phase after the other put minutes of a changing load average between them (a near-empty
 * run measured 2-3x slower than the year, or the reverse, from one run to the next).
 *
 * Seed (both phases, through the admin API): 3 products (1,000,000 stock), one coupon open now
 * (quantity 100,000), and fresh users (`POST /admin/users`, 1,000,000 points each), one per write
 * request, so every write is a fresh valid request: a charge, an issuance (both issue routes),
 * an order (3 x --writes: a third then cancelled, a third paid, a third left NOT_PAID).
 *
 * Measured, one request at a time (no concurrency: the question is what one request costs):
 *   - per route, --reads calls (20) for reads, --writes (10) for writes (3 x for POST /orders,
 *     6 x for POST /admin/users); the median of the client's wall ms and of the D1 meter of the
 *     answer's `Server-Timing` (`d1;desc="2 calls, 14 rows read, 3 written, 1 write tx";dur=3.1`:
 *     lib/server-timing.mjs parseD1Meter); rows a Durable Object wrote to D1 on its own (the CouponIssuer's
 *     projection) are not in the request's meter;
 *   - reads of a user's own data target, in the year, --reads users (and orders) drawn from the
 *     history with a seeded generator, plus the user with the most point history / coupons
 *     ("heaviest"); near empty, the seed's users and orders. Catalogue reads send an
 *     `x-d1-bookmark` (from a probe answer) so the edge cache is skipped and D1 is read
 *     (bench:reads measures the cache itself); the last catalogue page too (OFFSET grows);
 *   - every cron of wrangler.toml `[triggers] crons`, --cron-runs times (5) through Miniflare's
 *     `scheduled()` (Cron Triggers never fire locally): the wall ms of the invocation and, per job,
 *     the `job done` log line's `d1RowsRead`, `d1RowsWritten`, `d1WriteTx`, `d1Calls`, `ms`
 *     (when the build logs them; else the ms between log lines, marked `~`) and its result;
 *   - `GET /health` the same way, as the reference: each route's median is also printed as a
 *     share of the same phase's /health rate (health ms / route ms), the house ratio; plus one
 *     autocannon /health ceiling per phase (10 connections).
 *
 * Prints: the machine, the year's row counts and how it was made (generated: seconds and rows/s;
 * or reused), the side-by-side table (routes, then crons and their jobs), job results, and one
 * machine-readable line per row, e.g.
 *   scale route="GET /points/history" n=20 rowsRead.empty=3 rowsRead.year=3 rowsWritten.empty=0 rowsWritten.year=0 ms.empty=4.1 ms.year=4.3 x.ms=1.05 health.empty=0.15 health.year=0.14
 *   scale cron="*\/10 * * * *" job="event-retention" n=5 rowsRead.empty=0 rowsRead.year=1500 ...
 * (`grep '^scale '`; a value the build does not report is `na`). Exit 0 when every request
 * answered 2xx and every job logged `job done`, 1 otherwise.
 *
 * Options: history sizes (scripts/scale/history.mjs: --orders 1000000 --items --point-history
 * --user-coupons --outbox --deliveries --users --products --coupons --dead-letters
 * --idempotency-keys --days) --seed 1 --reads 20 --writes 10 --cron-runs 5
 * --max-cache-age-hours 6 --no-cache
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADMIN_TOKEN, APP_ROOT, BENCH_DIR, startServer } from "./server.mjs";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { api, assertLoopback } from "./lib/http.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { parseD1Meter } from "./lib/server-timing.mjs";
import { healthCeiling } from "./lib/load.mjs";
import { fmt, fmtInt } from "./lib/report.mjs";
import { isoWithOffset, rng } from "./lib/fixtures.mjs";
import { findD1File, historyKey, historySizes, writeHistory } from "../scale/history.mjs";

exitWithHelpIfAsked(import.meta.url);

const SIZES = historySizes();
const SEED = arg("seed", 1);
const READS = arg("reads", 20);
const WRITES = arg("writes", 10);
const CRON_RUNS = arg("cron-runs", 5);
const MAX_CACHE_AGE_H = arg("max-cache-age-hours", 6);
const NO_CACHE = process.argv.includes("--no-cache");
const HOUR_MS = 3_600_000;
const HARD_STOP_MS = 30 * 60_000;
const CACHE_DIR = join(BENCH_DIR, "scale");

const hardStop = setTimeout(() => {
  console.error(`[bench] scale: hard stop after ${HARD_STOP_MS / 60_000} min`);
  process.kill(process.pid, "SIGTERM"); // the server's exit hooks stop workerd and drop the state dir
}, HARD_STOP_MS);
hardStop.unref();

// ---------------------------------------------------------------- small stats

/**
 * @param {(number | undefined)[]} xs
 * @returns {number | undefined}
 */
const median = (xs) => {
  const s = /** @type {number[]} */ (xs.filter((x) => x !== undefined && Number.isFinite(x))).sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  return s.length % 2 ? s[(s.length - 1) / 2] : ((s[s.length / 2 - 1] ?? NaN) + (s[s.length / 2] ?? NaN)) / 2;
};

/** @typedef {Awaited<ReturnType<typeof startServer>>} Server */
/** @typedef {{ body?: unknown, admin?: boolean, headers?: Record<string, string> }} CallOptions */
/** @typedef {{ status: number, json: any, ms: number, d1: import("./lib/server-timing.mjs").D1Meter | undefined }} Sample */
/**
 * One job's `job done` / `job failed` line of one cron run.
 * @typedef {{ job: string, ok: boolean, rowsRead?: number, rowsWritten?: number, writeTx?: number, calls?: number, ms: number | undefined, msDerived: boolean, result: unknown, error: unknown }} JobRun
 */
/** @typedef {{ wallMs: number, jobs: JobRun[] }} CronRun */

// ---------------------------------------------------------------- one request

/**
 * One timed request: status, body, client wall ms (to the last body byte) and the D1 meter
 * of its `Server-Timing`.
 * @param {string} base
 * @param {string} method
 * @param {string} path
 * @param {CallOptions} [o]
 * @returns {Promise<Sample>}
 */
async function call(base, method, path, { body, admin = false, headers = {} } = {}) {
  const url = new URL(path, base).toString();
  assertLoopback(url);
  const started = performance.now();
  const res = await fetch(url, {
    method,
    headers: {
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(admin ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text.slice(0, 200) };
  }
  return { status: res.status, json, ms, d1: parseD1Meter(res.headers.get("server-timing")) };
}

// ---------------------------------------------------------------- crons

/**
 * wrangler.toml `[triggers] crons`, through wrangler's own reader.
 * @returns {Promise<string[]>}
 */
async function cronsOf() {
  const { unstable_readConfig } = await import("wrangler");
  return unstable_readConfig({ config: join(APP_ROOT, "wrangler.toml") }).triggers?.crons ?? [];
}

/**
 * Reads the server's log file from `offset`: new JSON log objects and the new offset.
 * @param {string} file
 * @param {number} offset
 * @returns {{ entries: any[], offset: number }}
 */
function readLog(file, offset) {
  if (!existsSync(file)) return { entries: [], offset };
  const buf = readFileSync(file);
  const text = buf.subarray(offset).toString("utf8");
  const end = text.lastIndexOf("\n");
  if (end < 0) return { entries: [], offset };
  const entries = [];
  for (const line of text.slice(0, end).split("\n")) {
    const brace = line.indexOf("{");
    if (brace < 0) continue;
    try {
      entries.push(JSON.parse(line.slice(brace)));
    } catch {
      /* a line that is not one JSON object (workerd's own) */
    }
  }
  return { entries, offset: offset + Buffer.byteLength(text.slice(0, end + 1)) };
}

/**
 * Runs one cron through `scheduled()` and collects its jobs' `job done` / `job failed` lines
 * (structured logs reach the file shortly after the invocation returns: read until two reads
 * 100 ms apart add nothing).
 * @param {Server} server
 * @param {string} cron
 * @param {{ offset: number }} logState
 * @returns {Promise<CronRun>}
 */
async function runCron(server, cron, logState) {
  const wallStart = Date.now();
  const started = performance.now();
  await server.scheduled(cron);
  const wallMs = performance.now() - started;
  const jobs = [];
  let quiet = 0;
  for (let i = 0; i < 50 && quiet < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const { entries, offset } = readLog(server.logFile, logState.offset);
    logState.offset = offset;
    const mine = entries.filter((e) => (e.msg === "job done" || e.msg === "job failed") && e.cron === cron);
    jobs.push(...mine);
    quiet = mine.length === 0 && jobs.length > 0 ? quiet + 1 : 0;
  }
  let prev = wallStart;
  const out = jobs.map((e) => {
    const at = Date.parse(e.time);
    const derived = Number.isFinite(at) ? Math.max(0, at - prev) : undefined;
    if (Number.isFinite(at)) prev = at;
    return {
      job: e.job,
      ok: e.msg === "job done",
      rowsRead: e.d1RowsRead,
      rowsWritten: e.d1RowsWritten,
      writeTx: e.d1WriteTx,
      calls: e.d1Calls,
      ms: typeof e.ms === "number" ? e.ms : derived,
      msDerived: typeof e.ms !== "number",
      result: e.result,
      error: e.errMessage,
    };
  });
  return { wallMs, jobs: out };
}

// ---------------------------------------------------------------- the year's D1 file

/**
 * A fresh bench state dir whose D1 file holds the year: copied from the cache when it is
 * young enough, else generated into the file (and cached). The state dir is the server's to
 * delete when it stops.
 */
async function prepareYear() {
  const key = historyKey(SIZES, SEED);
  const cacheFile = join(CACHE_DIR, `${key}.sqlite`);
  const metaFile = join(CACHE_DIR, `${key}.json`);
  // A server creates and migrates the state dir (workerd's own tables included), then stops.
  const empty = await startServer({ build: false, keepState: true, quiet: true });
  const stateDir = empty.stateDir;
  await empty.stop();
  const d1File = findD1File(stateDir);
  // The migrated file's WAL and index belong to it, not to the year: never let SQLite replay them onto the copy.
  const dropSidecars = () => {
    for (const ext of ["-wal", "-shm", "-journal"]) rmSync(d1File + ext, { force: true });
  };
  let meta;
  try {
    meta = existsSync(metaFile) && existsSync(cacheFile) ? JSON.parse(readFileSync(metaFile, "utf8")) : undefined;
  } catch {
    meta = undefined;
  }
  const ageH = meta ? (Date.now() - meta.end) / HOUR_MS : Infinity;
  if (!NO_CACHE && meta && meta.key === key && ageH < MAX_CACHE_AGE_H && statSync(cacheFile).size === meta.bytes) {
    const t0 = performance.now();
    dropSidecars();
    copyFileSync(cacheFile, d1File);
    const copyS = (performance.now() - t0) / 1000;
    return {
      stateDir,
      meta,
      how: `reused ${cacheFile} (made ${new Date(meta.madeAt).toISOString()}, history ends ${ageH.toFixed(1)} h ago; copied in ${copyS.toFixed(1)} s)`,
    };
  }
  const why = NO_CACHE
    ? "--no-cache"
    : !meta
      ? "no cached copy"
      : ageH >= MAX_CACHE_AGE_H
        ? `cached copy ends ${ageH.toFixed(1)} h ago (>= --max-cache-age-hours ${MAX_CACHE_AGE_H})`
        : "cached copy incomplete";
  console.error(`[bench] scale: generating the year (${why}) into ${d1File}`);
  const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  const gen = writeHistory(d1File, { sizes: SIZES, seed: SEED, end });
  dropSidecars();
  mkdirSync(CACHE_DIR, { recursive: true });
  const t0 = performance.now();
  copyFileSync(d1File, `${cacheFile}.tmp`);
  renameSync(`${cacheFile}.tmp`, cacheFile);
  const copyS = (performance.now() - t0) / 1000;
  meta = {
    key,
    sizes: SIZES,
    seed: SEED,
    end: gen.end,
    start: gen.start,
    madeAt: Date.now(),
    counts: gen.counts,
    rows: gen.rows,
    seconds: gen.seconds,
    rowsPerSecond: gen.rowsPerSecond,
    heaviest: gen.heaviest,
    bytes: statSync(cacheFile).size,
  };
  writeFileSync(metaFile, JSON.stringify(meta, null, 2));
  return {
    stateDir,
    meta,
    generated: gen,
    how: `generated: ${fmtInt(gen.rows)} rows in ${fmt(gen.seconds)} s = ${fmtInt(gen.rowsPerSecond)} rows/s (node:sqlite into the D1 file; FK check included), cached as ${cacheFile} (${fmt(meta.bytes / 2 ** 20, 0)} MiB, copy ${fmt(copyS)} s)`,
  };
}

// ---------------------------------------------------------------- both phases, in lockstep

/**
 * One phase's server and what the bench made on it. Near empty: `year` undefined, reads
 * target the seed's own users and orders; with the year: reads target the history's.
 */
class Phase {
  /**
   * @param {string} name
   * @param {Server} server
   * @param {any} [year] the year's metadata (scale/history.mjs writeHistory), undefined near empty
   */
  constructor(name, server, year) {
    this.name = name;
    this.server = server;
    this.year = year;
    /** @type {Map<string, Sample[]>} route label -> samples */
    this.rec = new Map();
    /** @type {Map<string, CronRun[]>} cron -> runs */
    this.cronRuns = new Map();
    this.logState = { offset: 0 };
    // What the bench made on this phase's server (seed, measure, readTargets).
    /** @type {number[]} */ this.live = [];
    this.couponId = 0;
    /** @type {CallOptions} */ this.noCache = {};
    /** @type {number[]} */ this.users = [];
    /** @type {number[]} */ this.chargers = [];
    /** @type {number[]} */ this.issuers = [];
    /** @type {number[]} */ this.pathIssuers = [];
    /** @type {number[]} */ this.buyers = [];
    /** @type {{ orderId: number, userId: number }[]} */ this.orders = [];
    /** @type {number[]} */ this.readUsers = [];
    /** @type {{ orderId: number, userId: number }[]} */ this.readOrders = [];
    /** @type {number[]} */ this.readProducts = [];
    this.heavyHistory = 0;
    this.heavyCoupons = 0;
    this.total = 0;
    /** @type {import("./lib/load.mjs").LoadRun | undefined} */ this.ceiling = undefined;
  }
  /**
   * @param {string} label
   * @param {Sample} sample
   */
  record(label, sample) {
    const list = this.rec.get(label) ?? [];
    this.rec.set(label, list);
    list.push(sample);
    return sample;
  }
}

/**
 * Runs `n` requests of one route on each phase, alternating phases call by call (and which
 * goes first), so a change in the machine's load (other processes on this shared box) hits
 * both columns alike instead of one phase. `make(phase, i)` -> [method, path, options].
 * Returns each phase's samples, in phase order.
 * @param {Phase[]} phases
 * @param {string} label
 * @param {number} n
 * @param {(phase: Phase, i: number) => [string, string, CallOptions?]} make
 * @returns {Promise<Sample[][]>}
 */
async function step(phases, label, n, make) {
  /** @type {Sample[][]} */
  const out = phases.map(() => []);
  for (let i = 0; i < n; i++) {
    const order = i % 2 === 0 ? phases.map((_, k) => k) : phases.map((_, k) => phases.length - 1 - k);
    for (const k of order) {
      const phase = /** @type {Phase} */ (phases[k]);
      const [method, path, opts] = make(phase, i);
      out[k]?.push(phase.record(label, await call(phase.server.url, method, path, opts)));
    }
  }
  return out;
}

/**
 * @param {{ status: number, json: any }} r
 * @param {string} what
 * @returns {any} the envelope's `data`
 */
const mustOk = (r, what) => {
  if (r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.data;
};

/**
 * The seed of one phase (not measured): live products, an open coupon, a cache-skipping bookmark.
 * @param {Phase} phase
 */
async function seed(phase) {
  const base = phase.server.url;
  for (let i = 0; i < 5; i++) await call(base, "GET", "/health"); // the isolate, its JIT, the connection
  phase.live = [];
  for (let i = 0; i < 3; i++) {
    phase.live.push(
      mustOk(
        await api(
          base,
          "POST",
          "/api/v1/admin/products",
          { name: `scale-live-${i}`, description: "bench:scale", price: 1000, stock: 1_000_000 },
          { admin: true },
        ),
        "product",
      ).productId,
    );
  }
  const now = Date.now();
  phase.couponId = mustOk(
    await api(
      base,
      "POST",
      "/api/v1/admin/coupons",
      {
        name: "scale-live",
        discountType: "RATE",
        discountValue: 10,
        quantity: 100_000,
        startsAt: isoWithOffset(now - 60_000),
        endsAt: isoWithOffset(now + 86_400_000),
      },
      { admin: true },
    ),
    "coupon",
  ).couponId;
  // Catalogue reads that send a bookmark skip the edge cache and read D1 (any answer that touched D1 carries one).
  const probe = await fetch(new URL("/api/v1/products", base), { headers: { "x-d1-bookmark": "" } });
  await probe.arrayBuffer();
  const bookmark = probe.headers.get("x-d1-bookmark");
  if (!bookmark) throw new Error("no x-d1-bookmark on GET /api/v1/products: cannot skip the edge cache");
  phase.noCache = { headers: { "x-d1-bookmark": bookmark } };
}

/**
 * Who the reads of a user's own data ask for: the history's in the year, the seed's near empty.
 * @param {Phase} phase
 */
async function readTargets(phase) {
  const pick = rng(SEED * 7919 + 17);
  const y = phase.year;
  if (!y) {
    phase.readUsers = Array.from({ length: READS }, (_, i) => phase.users[i % phase.users.length]);
    phase.readOrders = Array.from({ length: READS }, (_, i) => phase.orders[i % phase.orders.length]);
    phase.readProducts = Array.from({ length: READS }, (_, i) => phase.live[i % phase.live.length]);
    phase.heavyHistory = phase.chargers[0];
    phase.heavyCoupons = phase.issuers[0];
    return;
  }
  phase.readUsers = Array.from({ length: READS }, () => 1 + Math.floor(pick() * y.counts.users));
  const ids = Array.from({ length: READS }, () => 1 + Math.floor(pick() * y.counts.orders));
  const owners = new Map(
    (
      await phase.server.d1.all(
        "SELECT id, user_id AS userId FROM orders WHERE id IN (SELECT value FROM json_each(?))",
        JSON.stringify(ids),
      )
    ).map((/** @type {{ id: number, userId: number }} */ r) => [r.id, r.userId]),
  );
  phase.readOrders = ids.filter((id) => owners.has(id)).map((id) => ({ orderId: id, userId: owners.get(id) ?? 0 }));
  phase.readProducts = Array.from({ length: READS }, () => 1 + Math.floor(pick() * y.counts.products));
  // A history without point rows or coupons has no heaviest user: ask for the seed's.
  phase.heavyHistory = y.heaviest.pointHistoryRows > 0 ? y.heaviest.pointHistoryUser : phase.chargers[0];
  phase.heavyCoupons = y.heaviest.coupons > 0 ? y.heaviest.couponUser : phase.issuers[0];
}

/**
 * Every route and cron, on every phase in lockstep (writes first: the reads near empty read what they made).
 * @param {Phase[]} phases
 */
async function measure(phases) {
  for (const p of phases) await seed(p);
  await step(phases, "GET /health", READS, () => ["GET", "/health"]);

  // ---- writes: each a fresh valid request (a new user each; orders of their own)
  const made = await step(phases, "POST /admin/users", 6 * WRITES, (p, i) => [
    "POST",
    "/api/v1/admin/users",
    { admin: true, body: { name: `scale-${p.name}-${i}`, initialBalance: 1_000_000 } },
  ]);
  phases.forEach((p, k) => {
    p.users = made[k].map((r) => mustOk(r, "user").userId);
    /** @param {number} j */
    const slice = (j) => p.users.slice(j * WRITES, (j + 1) * WRITES);
    [p.chargers, p.issuers, p.pathIssuers] = [slice(0), slice(1), slice(2)];
    p.buyers = p.users.slice(3 * WRITES);
  });
  await step(phases, "POST /points/charge", WRITES, (p, i) => [
    "POST",
    "/api/v1/points/charge",
    { body: { userId: p.chargers[i], amount: 10_000 } },
  ]);
  await step(phases, "POST /coupons/issue", WRITES, (p, i) => [
    "POST",
    "/api/v1/coupons/issue",
    { body: { userId: p.issuers[i], couponId: p.couponId } },
  ]);
  await step(phases, "POST /coupons/{couponId}/issue", WRITES, (p, i) => [
    "POST",
    `/api/v1/coupons/${p.couponId}/issue`,
    { body: { userId: p.pathIssuers[i] } },
  ]);
  const placed = await step(phases, "POST /orders", 3 * WRITES, (p, i) => [
    "POST",
    "/api/v1/orders",
    { body: { userId: p.buyers[i], orderProducts: [{ productId: p.live[i % p.live.length], quantity: 1 }] } },
  ]);
  phases.forEach((p, k) => {
    p.orders = placed[k].map((r, i) => ({ orderId: mustOk(r, "order").orderId, userId: p.buyers[i] }));
  });
  await step(phases, "POST /orders/{orderId}/cancel", WRITES, (p, i) => [
    "POST",
    `/api/v1/orders/${p.orders[i].orderId}/cancel`,
    { body: { userId: p.orders[i].userId } },
  ]);
  await step(phases, "POST /points/use", WRITES, (p, i) => [
    "POST",
    "/api/v1/points/use",
    { body: { userId: p.orders[WRITES + i].userId, orderId: p.orders[WRITES + i].orderId } },
  ]);

  // ---- reads
  for (const p of phases) await readTargets(p);
  const nOrders = Math.min(...phases.map((p) => p.readOrders.length));
  await step(phases, "GET /points", READS, (p, i) => ["GET", `/api/v1/points?userId=${p.readUsers[i]}`]);
  await step(phases, "GET /points/history", READS, (p, i) => ["GET", `/api/v1/points/history?userId=${p.readUsers[i]}`]);
  await step(phases, "GET /points/history (heaviest user)", READS, (p) => ["GET", `/api/v1/points/history?userId=${p.heavyHistory}`]);
  await step(phases, "GET /coupons?userId=", READS, (p, i) => ["GET", `/api/v1/coupons?userId=${p.readUsers[i]}`]);
  await step(phases, "GET /coupons?userId= (heaviest user)", READS, (p) => ["GET", `/api/v1/coupons?userId=${p.heavyCoupons}`]);
  await step(phases, "GET /orders/{orderId}", nOrders, (p, i) => [
    "GET",
    `/api/v1/orders/${p.readOrders[i].orderId}?userId=${p.readOrders[i].userId}`,
  ]);
  const first = await step(phases, "GET /products (first page)", READS, (p) => ["GET", "/api/v1/products?page=0&size=10", p.noCache]);
  phases.forEach((p, k) => {
    p.total = first[k].find((r) => r.status === 200)?.json?.data?.total ?? 0;
  });
  await step(phases, "GET /products (last page)", READS, (p) => [
    "GET",
    `/api/v1/products?page=${Math.max(0, Math.ceil(p.total / 10) - 1)}&size=10`,
    p.noCache,
  ]);
  await step(phases, "GET /products/{productId}", READS, (p, i) => ["GET", `/api/v1/products/${p.readProducts[i]}`, p.noCache]);
  await step(phases, "GET /products/top", READS, (p) => ["GET", "/api/v1/products/top", p.noCache]);
  await step(phases, "GET /products/best", READS, (p) => ["GET", "/api/v1/products/best", p.noCache]);
  await step(phases, "GET /admin/dead-letters", READS, () => ["GET", "/api/v1/admin/dead-letters?limit=50", { admin: true }]);
  await step(phases, "GET /admin/coupons/{couponId}/shards", READS, (p) => [
    "GET",
    `/api/v1/admin/coupons/${p.couponId}/shards`,
    { admin: true },
  ]);
  await step(phases, "GET /admin/products/{productId}/stock-shards", READS, (p) => [
    "GET",
    `/api/v1/admin/products/${p.live[0]}/stock-shards`,
    { admin: true },
  ]);

  // ---- crons (everything logged so far is the routes')
  for (const p of phases) p.logState.offset = existsSync(p.server.logFile) ? statSync(p.server.logFile).size : 0;
  for (const cron of await cronsOf()) {
    for (let r = 0; r < CRON_RUNS; r++) {
      const order = r % 2 === 0 ? phases : [...phases].reverse();
      for (const p of order) {
        const runs = p.cronRuns.get(cron) ?? [];
        p.cronRuns.set(cron, runs);
        runs.push(await runCron(p.server, cron, p.logState));
      }
    }
  }

  // ---- the /health ceiling of each server, one right after the other
  for (const p of phases)
    p.ceiling = await healthCeiling(p.server.url, { connections: 10, amount: 3000, label: `GET /health (ceiling, ${p.name})` });
}

// ---------------------------------------------------------------- summaries and output

/**
 * Median row of a route's samples; `metered` says whether the build reported D1 rows.
 * @param {Sample[] | undefined} samples
 */
function summarize(samples) {
  if (!samples || samples.length === 0) return undefined;
  const metered = samples.some((s) => s.d1?.rowsRead !== undefined);
  /** @param {(s: Sample) => number | undefined} f */
  const m = (f) => median(samples.map(f));
  /** @type {Record<number, number>} */
  const statuses = {};
  for (const s of samples) statuses[s.status] = (statuses[s.status] ?? 0) + 1;
  return {
    n: samples.length,
    ms: m((s) => s.ms),
    calls: m((s) => s.d1?.calls ?? 0),
    nested: m((s) => s.d1?.nested ?? 0),
    rowsRead: metered ? m((s) => s.d1?.rowsRead ?? 0) : undefined,
    rowsWritten: metered ? m((s) => s.d1?.rowsWritten ?? 0) : undefined,
    writeTx: metered ? m((s) => s.d1?.writeTx ?? 0) : undefined,
    d1Ms: m((s) => s.d1?.dur ?? 0),
    ok: samples.every((s) => s.status >= 200 && s.status < 300),
    statuses,
  };
}

/** @typedef {{ n: number, ms: number | undefined, calls: number | undefined, nested?: number, rowsRead: number | undefined, rowsWritten: number | undefined, writeTx: number | undefined, ok: boolean, msDerived?: boolean, results?: unknown[], errors?: unknown[], statuses?: Record<number, number> }} Summary */
/**
 * Median per job over a cron's runs, plus the invocation's wall ms.
 * @param {CronRun[]} runs
 * @returns {{ total: Summary & { jobs: number[] }, perJob: Map<string, Summary> }}
 */
function summarizeCron(runs) {
  /** @type {Map<string, JobRun[]>} */
  const jobs = new Map();
  for (const run of runs) {
    for (const j of run.jobs) {
      const list = jobs.get(j.job) ?? [];
      jobs.set(j.job, list);
      list.push(j);
    }
  }
  /** @type {Map<string, Summary>} */
  const perJob = new Map();
  for (const [job, xs] of jobs) {
    const metered = xs.some((x) => x.rowsRead !== undefined);
    perJob.set(job, {
      n: xs.length,
      ms: median(xs.map((x) => x.ms)),
      msDerived: xs.some((x) => x.msDerived),
      calls: median(xs.map((x) => x.calls)),
      rowsRead: metered ? median(xs.map((x) => x.rowsRead ?? 0)) : undefined,
      rowsWritten: metered ? median(xs.map((x) => x.rowsWritten ?? 0)) : undefined,
      writeTx: metered ? median(xs.map((x) => x.writeTx ?? 0)) : undefined,
      ok: xs.every((x) => x.ok),
      results: xs.map((x) => x.result),
      errors: xs.filter((x) => !x.ok).map((x) => x.error),
    });
  }
  /**
   * @param {CronRun} run
   * @param {(j: JobRun) => number | undefined} f
   */
  const sum = (run, f) => (run.jobs.some((j) => f(j) === undefined) ? undefined : run.jobs.reduce((a, j) => a + (f(j) ?? 0), 0));
  const total = {
    n: runs.length,
    ms: median(runs.map((r) => r.wallMs)),
    calls: median(runs.map((r) => sum(r, (j) => j.calls))),
    rowsRead: median(runs.map((r) => sum(r, (j) => j.rowsRead))),
    rowsWritten: median(runs.map((r) => sum(r, (j) => j.rowsWritten))),
    writeTx: median(runs.map((r) => sum(r, (j) => j.writeTx))),
    ok: runs.every((r) => r.jobs.length > 0 && r.jobs.every((j) => j.ok)),
    jobs: runs.map((r) => r.jobs.length),
  };
  return { total, perJob };
}

/** @param {number | undefined} n */
const num = (n, d = 0) => (n === undefined || !Number.isFinite(n) ? "n/a" : d === 0 ? fmtInt(n) : fmt(n, d));
/** @param {number | undefined} n */
const ms = (n) => (n === undefined || !Number.isFinite(n) ? "n/a" : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
/**
 * year / empty: "-" when either is unknown, "=" when both are 0, "new" when only the year has some.
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
function ratio(a, b) {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) return "-";
  if (a === 0 && b === 0) return "=";
  if (a === 0) return "new";
  return `${(b / a).toFixed(b / a >= 10 ? 0 : 2)}x`;
}
/** @param {number | undefined} n */
const raw = (n, d = 2) => (n === undefined || !Number.isFinite(n) ? "na" : Number.isInteger(n) ? String(n) : n.toFixed(d));
/**
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
const rawRatio = (a, b) =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || a === 0 ? "na" : (b / a).toFixed(2);

/**
 * @param {Phase} empty
 * @param {Phase} year
 * @param {{ healthMs: { empty: number | undefined, year: number | undefined } }} o
 */
function printSideBySide(empty, year, { healthMs }) {
  console.log("\n### Near empty vs a year of history (medians; rows = D1 rows from the Server-Timing meter / the `job done` line)\n");
  console.log("D1 calls `(+N)`: D1 calls a Durable Object made before it answered; their rows are not in the request's meter.\n");
  console.log(
    "| route / job | n | D1 calls empty / year | rows read empty | rows read year | x | rows written empty | rows written year | x | ms empty | ms year | x | status |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  /**
   * @param {string} label
   * @param {Summary | undefined} e
   * @param {Summary | undefined} y
   * @param {{ derived?: boolean }} [o]
   */
  const row = (label, e, y, { derived = false } = {}) => {
    const status =
      !e || !y
        ? "missing"
        : e.ok && y.ok
          ? "ok"
          : `empty ${JSON.stringify(e.statuses ?? e.ok)} / year ${JSON.stringify(y.statuses ?? y.ok)}`;
    /** @param {number | undefined} v */
    const m = (v) => `${derived ? "~" : ""}${ms(v)}`;
    /** @param {Summary | undefined} x */
    const calls = (x) => `${num(x?.calls, 1)}${x?.nested ? ` (+${num(x.nested, 1)})` : ""}`;
    console.log(
      `| ${label} | ${y?.n ?? e?.n ?? 0} | ${calls(e)} / ${calls(y)} | ${num(e?.rowsRead)} | ${num(y?.rowsRead)} | ${ratio(e?.rowsRead, y?.rowsRead)} | ${num(e?.rowsWritten)} | ${num(y?.rowsWritten)} | ${ratio(e?.rowsWritten, y?.rowsWritten)} | ${m(e?.ms)} | ${m(y?.ms)} | ${ratio(e?.ms, y?.ms)} | ${status} |`,
    );
  };
  const lines = [];
  for (const label of new Set([...empty.rec.keys(), ...year.rec.keys()])) {
    const e = summarize(empty.rec.get(label));
    const y = summarize(year.rec.get(label));
    row(label === "GET /health" ? "GET /health (reference)" : label, e, y);
    lines.push(
      `scale route="${label}" n=${y?.n ?? 0} calls.empty=${raw(e?.calls)} calls.year=${raw(y?.calls)} nested.empty=${raw(e?.nested)} nested.year=${raw(y?.nested)} rowsRead.empty=${raw(e?.rowsRead)} rowsRead.year=${raw(y?.rowsRead)} rowsWritten.empty=${raw(e?.rowsWritten)} rowsWritten.year=${raw(y?.rowsWritten)} writeTx.empty=${raw(e?.writeTx)} writeTx.year=${raw(y?.writeTx)} ms.empty=${raw(e?.ms)} ms.year=${raw(y?.ms)} x.ms=${rawRatio(e?.ms, y?.ms)} health.empty=${rawRatio(e?.ms, healthMs.empty)} health.year=${rawRatio(y?.ms, healthMs.year)}`,
    );
  }
  const results = [];
  for (const cron of new Set([...empty.cronRuns.keys(), ...year.cronRuns.keys()])) {
    const e = summarizeCron(empty.cronRuns.get(cron) ?? []);
    const y = summarizeCron(year.cronRuns.get(cron) ?? []);
    row(`cron \`${cron}\` (all jobs, wall ms)`, e.total, y.total);
    lines.push(
      `scale cron="${cron}" job="all" n=${y.total.n} rowsRead.empty=${raw(e.total.rowsRead)} rowsRead.year=${raw(y.total.rowsRead)} rowsWritten.empty=${raw(e.total.rowsWritten)} rowsWritten.year=${raw(y.total.rowsWritten)} writeTx.empty=${raw(e.total.writeTx)} writeTx.year=${raw(y.total.writeTx)} ms.empty=${raw(e.total.ms)} ms.year=${raw(y.total.ms)} x.ms=${rawRatio(e.total.ms, y.total.ms)}`,
    );
    for (const job of new Set([...e.perJob.keys(), ...y.perJob.keys()])) {
      const ej = e.perJob.get(job);
      const yj = y.perJob.get(job);
      row(`&nbsp;&nbsp;job ${job}`, ej, yj, { derived: Boolean(ej?.msDerived || yj?.msDerived) });
      lines.push(
        `scale cron="${cron}" job="${job}" n=${yj?.n ?? 0} calls.empty=${raw(ej?.calls)} calls.year=${raw(yj?.calls)} rowsRead.empty=${raw(ej?.rowsRead)} rowsRead.year=${raw(yj?.rowsRead)} rowsWritten.empty=${raw(ej?.rowsWritten)} rowsWritten.year=${raw(yj?.rowsWritten)} writeTx.empty=${raw(ej?.writeTx)} writeTx.year=${raw(yj?.writeTx)} ms.empty=${raw(ej?.ms)} ms.year=${raw(yj?.ms)} x.ms=${rawRatio(ej?.ms, yj?.ms)}${ej?.msDerived || yj?.msDerived ? " ms=log-gap" : ""}`,
      );
      /** @param {Summary | undefined} x */
      const show = (x) =>
        JSON.stringify(x?.results?.[0] ?? null) +
        (x?.results && x.results.length > 1 ? ` ... ${JSON.stringify(x.results[x.results.length - 1] ?? null)}` : "");
      results.push(
        `- \`${cron}\` ${job}: empty ${show(ej)}; year ${show(yj)}${[...(ej?.errors ?? []), ...(yj?.errors ?? [])].length ? `; FAILED: ${[...(ej?.errors ?? []), ...(yj?.errors ?? [])].join(" | ")}` : ""}`,
      );
    }
  }
  const meteredRoutes = [...empty.rec.values(), ...year.rec.values()].some((xs) => xs.some((s) => s.d1?.rowsRead !== undefined));
  if (!meteredRoutes)
    console.log("\nRows: n/a: this build's Server-Timing carries no D1 row counts (the D1 meter is not in it); ms and D1 calls only.");
  const meteredJobs = [...empty.cronRuns.values(), ...year.cronRuns.values()].some((runs) =>
    runs.some((r) => r.jobs.some((j) => j.rowsRead !== undefined)),
  );
  if (!meteredJobs)
    console.log(
      "Jobs: this build's `job done` lines carry no d1RowsRead / ms: rows n/a, ms `~` = the gap between consecutive log lines (the first from the invocation's start).",
    );
  console.log("\nJob results (first and last run of each phase):\n");
  for (const r of results) console.log(r);
  console.log("");
  for (const l of lines) console.log(l);
  const routesOk = [...empty.rec.values(), ...year.rec.values()].every((xs) => xs.every((s) => s.status >= 200 && s.status < 300));
  const cronsOk = [empty, year].every((p) => [...p.cronRuns.values()].every((runs) => summarizeCron(runs).total.ok));
  return { routesOk, cronsOk };
}

// ---------------------------------------------------------------- run

let exitCode = 1;
const servers = [];
try {
  printMachine({
    server: "Miniflare/workerd, wrangler deploy --dry-run bundle (scripts/bench/server.mjs), two servers: near empty and the year",
  });
  console.log(`\n## bench:scale  history ${historyKey(SIZES, SEED)}  reads=${READS} writes=${WRITES} cron-runs=${CRON_RUNS}`);

  const emptyServer = await startServer(); // builds the bundle
  servers.push(emptyServer);
  const year = await prepareYear();
  console.log(`\nThe year: ${year.how}`);
  console.log(
    `- ${new Date(year.meta.start).toISOString()} .. ${new Date(year.meta.end).toISOString()}; ${Object.entries(year.meta.counts)
      .map(([t, n]) => `${t} ${fmtInt(n)}`)
      .join(", ")}`,
  );
  console.log(
    `- heaviest users: #${year.meta.heaviest.pointHistoryUser} (${fmtInt(year.meta.heaviest.pointHistoryRows)} point rows), #${year.meta.heaviest.couponUser} (${fmtInt(year.meta.heaviest.coupons)} coupons)`,
  );
  if (year.generated)
    console.log(
      `history seconds=${year.generated.seconds.toFixed(1)} rows=${year.generated.rows} rows_per_s=${Math.round(year.generated.rowsPerSecond)} bytes=${year.meta.bytes}`,
    );
  const yearServer = await startServer({ build: false, stateDir: year.stateDir });
  servers.push(yearServer);

  const empty = new Phase("empty", emptyServer);
  const withYear = new Phase("year", yearServer, year.meta);
  console.error("[bench] scale: measuring both servers, call by call");
  await measure([empty, withYear]);

  const healthMs = { empty: summarize(empty.rec.get("GET /health"))?.ms, year: summarize(withYear.rec.get("GET /health"))?.ms };
  if (!empty.ceiling || !withYear.ceiling) throw new Error("no /health ceiling measured");
  console.log("\n### /health reference (same run, both servers)\n");
  console.log("| server | sequential median ms | autocannon req/s (10 conns, 3,000 req) | p50 ms | p99 ms |");
  console.log("|---|---:|---:|---:|---:|");
  console.log(
    `| near empty | ${ms(healthMs.empty)} | ${fmtInt(empty.ceiling.rps)} | ${fmt(empty.ceiling.p50, 0)} | ${fmt(empty.ceiling.p99, 0)} |`,
  );
  console.log(
    `| year | ${ms(healthMs.year)} | ${fmtInt(withYear.ceiling.rps)} | ${fmt(withYear.ceiling.p50, 0)} | ${fmt(withYear.ceiling.p99, 0)} |`,
  );
  console.log(`\nCatalogue: ${fmtInt(empty.total)} products near empty, ${fmtInt(withYear.total)} with the year.`);
  const { routesOk, cronsOk } = printSideBySide(empty, withYear, { healthMs });
  console.log(
    `scale health ms.empty=${raw(healthMs.empty)} ms.year=${raw(healthMs.year)} rps.empty=${Math.round(empty.ceiling.rps)} rps.year=${Math.round(withYear.ceiling.rps)}`,
  );
  console.log(`ratio scale.health-year-vs-empty=${(withYear.ceiling.rps / empty.ceiling.rps).toFixed(3)}`);
  printLoad();
  exitCode = routesOk && cronsOk ? 0 : 1;
  if (!routesOk) console.log("\nSOME REQUESTS DID NOT ANSWER 2xx (see the status column)");
  if (!cronsOk) console.log("\nSOME CRON RUNS LOGGED NO `job done` FOR A JOB, OR A `job failed` (see the job results)");
} catch (err) {
  console.error(err);
} finally {
  for (const s of servers) await s.stop();
}
process.exit(exitCode);
