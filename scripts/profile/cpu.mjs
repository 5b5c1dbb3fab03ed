#!/usr/bin/env node
/**
 * `npm run profile:cpu -- --scenario coupons|orders [--seconds 20]`: where workerd's CPU
 * goes during a storm.
 *
 * Starts the bench server (scripts/bench/server.mjs, same bundle and bindings) with
 * workerd's V8 inspector on a free loopback port, sets the scenario up (not profiled),
 * then connects to the inspector over WebSocket (DevTools protocol: `GET /json` lists the
 * targets; per target `Profiler.enable`, `Profiler.setSamplingInterval`, `Profiler.start`),
 * runs the storm for `--seconds`, and `Profiler.stop`s. The Worker target is
 * `core:user:<name>`; the Durable Objects (CouponIssuer, ProductStock) are
 * classes of the same script and run in the same isolate, so workerd lists no target of
 * their own and their code shows up in the Worker's profile. `--with-d1` also profiles
 * Miniflare's local D1 worker (`d1:db`, the SQLite side; not our code, and not what
 * Cloudflare's D1 runs).
 *
 * Writes one `.cpuprofile` per target under `.bench/profiles/` (open it in Chrome DevTools >
 * Performance, or VS Code) and prints the top self-time entries, aggregated per function
 * (all call paths of one function: name + url + its position), with the bundle position
 * mapped to the source file through wrangler's source map (`.bench/dist/index.js.map`).
 *
 * Scenarios (the shapes of bench:coupons and bench:orders, smaller by default):
 *   coupons  one coupon (quantity --quantity 1000) and --users 10000 seeded users;
 *            POST /coupons/issue, one distinct user per request (wrapping around after
 *            --users requests: those answer COUPON_ALREADY_ISSUED)
 *   payments --orders 10000 one-line orders placed (not profiled) by --users 2000 users with
 *            balance; POST /points/use pays them in order, each once
 *   orders   --products 5 x --stock 2000 products, --users 1000 users with balance;
 *            POST /orders with 1..3 products x 1..3 units from a seeded plan (repeats
 *            after --orders 3000), so stock runs out and later orders get 409
 *
 * Options: --scenario coupons|orders --seconds 20 --connections 100 --interval-us 200
 *          --top 25 --with-d1 --seed 7, plus the scenario options above.
 * The profiler adds overhead: compare throughput with bench:* runs, not with this.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { SourceMap } from "node:module";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { arg } from "../bench/lib/args.mjs";
import { api, assertLoopback } from "../bench/lib/http.mjs";
import { printLoad, printMachine } from "../bench/lib/machine.mjs";
import { load } from "../bench/lib/load.mjs";
import { printTable } from "../bench/lib/report.mjs";
import { isoWithOffset, rng, seedUsersD1 } from "../bench/lib/fixtures.mjs";
import { APP_ROOT, BENCH_DIR, ROOT, startServer } from "../bench/server.mjs";

const SCENARIO = arg("scenario", "");
const SECONDS = arg("seconds", 20);
const CONNECTIONS = arg("connections", 100);
const INTERVAL_US = arg("interval-us", 200);
const TOP = arg("top", 25);
const WITH_D1 = process.argv.includes("--with-d1");
const SEED = arg("seed", 7);
const PROFILES_DIR = join(BENCH_DIR, "profiles");

if (!["coupons", "orders", "payments"].includes(SCENARIO) || !(SECONDS > 0) || SECONDS > 300) {
  console.error(
    "usage: npm run profile:cpu -- --scenario coupons|orders|payments [--seconds 20 (1..300)] [--connections 100] [--interval-us 200] [--top 25] [--with-d1]",
  );
  process.exit(1);
}
if (typeof WebSocket !== "function") {
  console.error(`no global WebSocket in Node ${process.version}: run through npm run / npx (node 22 from devDependencies)`);
  process.exit(1);
}

// ---------------------------------------------------------------- DevTools protocol

/** @typedef {{ send(method: string, params?: object, timeoutMs?: number): Promise<any>, close(): void }} Cdp */
/** @typedef {{ id: string, webSocketDebuggerUrl: string }} InspectorTarget */
/**
 * A V8 CPU profile (DevTools `Profiler.stop`), the parts read here.
 * @typedef {{ nodes: { id: number, callFrame?: { functionName: string, url?: string, lineNumber?: number, columnNumber?: number } }[], samples?: number[], timeDeltas?: number[] }} CpuProfile
 */

/**
 * A minimal DevTools-protocol client over Node's global WebSocket.
 * @param {string} wsUrl
 * @returns {Promise<Cdp>}
 */
async function cdpConnect(wsUrl) {
  assertLoopback(wsUrl.replace(/^ws/, "http"));
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener(
      "error",
      (e) => reject(new Error(`inspector ${wsUrl}: ${/** @type {{ message?: string }} */ (e).message ?? "connection failed"}`)),
      { once: true },
    );
  });
  let nextId = 1;
  /** @type {Map<number, { method: string, resolve: (r: unknown) => void, reject: (e: Error) => void }>} */
  const pending = new Map();
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString("utf8"));
    if (msg.id === undefined) return; // events: not needed here
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message ?? JSON.stringify(msg.error)}`));
    else p.resolve(msg.result);
  });
  ws.addEventListener("close", () => {
    for (const p of pending.values()) p.reject(new Error(`inspector closed during ${p.method}`));
    pending.clear();
  });
  return {
    send(method, params = {}, timeoutMs = 60_000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${method}: no answer in ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          method,
          resolve: (/** @type {unknown} */ r) => {
            clearTimeout(timer);
            resolve(r);
          },
          reject: (/** @type {Error} */ e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        ws.send(JSON.stringify({ id, method, params }));
      });
    },
    close() {
      ws.close();
    },
  };
}

// ---------------------------------------------------------------- profile analysis

/**
 * Bundle position -> source position, through the bundle's source map (when there is one).
 * @param {string} bundlePath
 * @returns {(line0: number, col0: number) => string | undefined}
 */
function sourceMapper(bundlePath) {
  const mapPath = `${bundlePath}.map`;
  if (!existsSync(mapPath)) return () => undefined;
  let map;
  try {
    map = new SourceMap(JSON.parse(readFileSync(mapPath, "utf8")));
  } catch {
    return () => undefined;
  }
  return (line0, col0) => {
    const e = map.findEntry(line0, col0);
    if (!e || !("originalSource" in e) || e.originalSource === undefined) return undefined;
    // Sources are relative to the bundle's dir ("../../src/x.ts"): show them relative to the app.
    const src = e.originalSource;
    const abs = src.startsWith("file:") ? fileURLToPath(src) : resolve(dirname(bundlePath), src);
    const rel = relative(APP_ROOT, abs);
    return `${rel.startsWith("..") ? src.replace(/^(\.\.\/)+/, "") : rel}:${e.originalLine + 1}`;
  };
}

/**
 * Self time per function: each sample's node gets the time until the next sample
 * (`timeDeltas[i + 1]`, DevTools' convention), summed over every node (call path) of the
 * same function (name + url + line + column of its definition).
 * @param {CpuProfile} profile
 */
function selfTimes(profile) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, number>} node id -> self time (us) */
  const perNode = new Map();
  const { samples = [], timeDeltas = [] } = profile;
  for (let i = 0; i < samples.length; i++) {
    const dt = timeDeltas[i + 1] ?? 0;
    perNode.set(samples[i], (perNode.get(samples[i]) ?? 0) + dt);
  }
  /** @type {Map<string, { functionName: string, url: string, lineNumber: number, columnNumber: number, us: number }>} */
  const perFn = new Map();
  let totalUs = 0;
  for (const [id, us] of perNode) {
    totalUs += us;
    const cf = nodes.get(id)?.callFrame ?? { functionName: "", url: undefined, lineNumber: undefined, columnNumber: undefined };
    const key = `${cf.functionName}\u0000${cf.url}\u0000${cf.lineNumber}\u0000${cf.columnNumber}`;
    const e = perFn.get(key) ?? {
      functionName: cf.functionName || "(anonymous)",
      url: cf.url ?? "",
      lineNumber: cf.lineNumber ?? -1,
      columnNumber: cf.columnNumber ?? -1,
      us: 0,
    };
    e.us += us;
    perFn.set(key, e);
  }
  return { entries: [...perFn.values()].sort((a, b) => b.us - a.us), totalUs, samples: samples.length };
}

/**
 * @param {InspectorTarget} target
 * @param {CpuProfile} profile
 * @param {(url: string, line: number, col: number) => string | undefined} mapSource
 */
function printTop(target, profile, mapSource) {
  const { entries, totalUs, samples } = selfTimes(profile);
  /** @param {string} name */
  const pseudo = (name) => entries.filter((e) => e.functionName === name).reduce((s, e) => s + e.us, 0);
  const idle = pseudo("(idle)");
  const program = pseudo("(program)");
  const gc = pseudo("(garbage collector)");
  /** @param {number} us */
  const pct = (us) => (totalUs > 0 ? ((100 * us) / totalUs).toFixed(1) : "-");
  /** @param {number} us */
  const ms = (us) => (us / 1000).toFixed(1);
  console.log(`\n### CPU profile: ${target.id} (top ${TOP} by self time)\n`);
  console.log(
    `${samples.toLocaleString("en-US")} samples over ${ms(totalUs)} ms; (idle) ${pct(idle)}%, (program) ${pct(program)}%, (garbage collector) ${pct(gc)}%, ` +
      `JavaScript ${pct(totalUs - idle - program - gc)}%\n`,
  );
  console.log("| # | function | url:line | source | self ms | self % |");
  console.log("|---:|---|---|---|---:|---:|");
  entries.slice(0, TOP).forEach((e, i) => {
    const where = e.url ? `${basename(e.url)}:${e.lineNumber + 1}` : "-";
    const src = e.url && e.lineNumber >= 0 ? (mapSource(e.url, e.lineNumber, e.columnNumber) ?? "") : "";
    console.log(`| ${i + 1} | ${e.functionName.replace(/\|/g, "\\|")} | ${where} | ${src} | ${ms(e.us)} | ${pct(e.us)} |`);
  });
}

// ---------------------------------------------------------------- scenarios

/**
 * Sets a scenario up (not profiled) and returns the load options of its storm.
 * @param {{ url: string, d1: import("../bench/lib/fixtures.mjs").LocalD1 }} server
 * @returns {Promise<Omit<import("../bench/lib/load.mjs").LoadOptions, "url">>}
 */
async function setupScenario(server) {
  if (SCENARIO === "coupons") {
    const users = arg("users", 10_000);
    const quantity = arg("quantity", 1000);
    const ids = await seedUsersD1(server.d1, users);
    const now = Date.now();
    const coupon = await api(
      server.url,
      "POST",
      "/api/v1/admin/coupons",
      {
        name: "profile first-come",
        discountType: "AMOUNT",
        discountValue: 1000,
        quantity,
        startsAt: isoWithOffset(now - 60_000),
        endsAt: isoWithOffset(now + 86_400_000),
      },
      { admin: true },
    );
    if (coupon.status !== 201) throw new Error(`coupon: ${coupon.status} ${JSON.stringify(coupon.json)}`);
    const couponId = coupon.json.data.couponId;
    console.log(`\nsetup: ${ids.length} users seeded into D1, coupon ${couponId} with quantity ${quantity}`);
    return {
      path: "/api/v1/coupons/issue",
      method: "POST",
      build: (i) => ({ body: { userId: ids[i % ids.length], couponId } }),
      label: `POST /coupons/issue (profiled storm, ${ids.length} users, quantity ${quantity})`,
    };
  }
  if (SCENARIO === "payments") return setupPayments(server);
  const products = arg("products", 5);
  const stock = arg("stock", 2000);
  const users = arg("users", 1000);
  const orders = arg("orders", 3000);
  /** @type {number[]} */
  const productIds = [];
  for (let i = 0; i < products; i++) {
    const r = await api(
      server.url,
      "POST",
      "/api/v1/admin/products",
      { name: `profile-hot-${i}`, price: 1000 * (i + 1), stock },
      { admin: true },
    );
    if (r.status !== 201) throw new Error(`product: ${r.status} ${JSON.stringify(r.json)}`);
    productIds.push(r.json.data.productId);
  }
  const ids = await seedUsersD1(server.d1, users, { initialBalance: 1_000_000 });
  const random = rng(SEED);
  const plan = Array.from({ length: orders }, (_, i) => {
    const shuffled = [...productIds].sort(() => random() - 0.5);
    const lines = shuffled.slice(0, 1 + Math.floor(random() * Math.min(3, products)));
    return {
      userId: ids[i % ids.length],
      orderProducts: lines.map((productId) => ({ productId, quantity: 1 + Math.floor(random() * 3) })),
    };
  });
  console.log(
    `\nsetup: ${products} products x ${stock} stock, ${ids.length} users seeded into D1, plan of ${orders} orders (seed ${SEED})`,
  );
  return {
    path: "/api/v1/orders",
    method: "POST",
    build: (i) => ({ body: plan[i % plan.length] }),
    label: `POST /orders (profiled storm, ${products} products x ${stock})`,
  };
}

/**
 * The payments scenario: --orders one-line orders (quantity 1, one product with stock for all)
 * placed before profiling by --users users with balance; the storm pays them in order
 * (`POST /points/use`), each once; past --orders the requests wrap around and answer 409
 * ORDER_NOT_PAYABLE, so size --orders above the storm (about 500 a second here).
 * @param {{ url: string, d1: import("../bench/lib/fixtures.mjs").LocalD1 }} server
 * @returns {Promise<Omit<import("../bench/lib/load.mjs").LoadOptions, "url">>}
 */
async function setupPayments(server) {
  const orders = arg("orders", 10_000);
  const users = arg("users", 2000);
  const product = await api(
    server.url,
    "POST",
    "/api/v1/admin/products",
    { name: "profile-paid", price: 1000, stock: orders },
    { admin: true },
  );
  if (product.status !== 201) throw new Error(`product: ${product.status} ${JSON.stringify(product.json)}`);
  const productId = product.json.data.productId;
  const ids = await seedUsersD1(server.d1, users, { initialBalance: 1_000_000 });
  /** @type {{ userId: number, orderId: number }[]} */
  const placed = [];
  /** @type {Record<number, number>} */
  const statuses = {};
  await load({
    url: server.url,
    path: "/api/v1/orders",
    method: "POST",
    amount: orders,
    connections: 50,
    parseBodies: true,
    maxSeconds: 600,
    build: (i, context) => {
      context.userId = ids[i % ids.length];
      return { body: { userId: context.userId, orderProducts: [{ productId, quantity: 1 }] } };
    },
    onResponse: (status, json, context) => {
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status === 201) placed.push({ userId: context.userId, orderId: json.data.orderId });
    },
    label: "setup: place the orders to pay",
  });
  // The per-user rate limit (or a 503 under the setup's own storm) may refuse some: pay what was placed.
  if (placed.length === 0) throw new Error(`no order placed: ${JSON.stringify(statuses)}`);
  console.log(
    `\nsetup: ${placed.length} of ${orders} one-line orders (${JSON.stringify(statuses)}) of product ${productId} placed by ${ids.length} users with balance`,
  );
  return {
    path: "/api/v1/points/use",
    method: "POST",
    build: (i) => ({ body: placed[i % placed.length] }),
    label: `POST /points/use (profiled storm, ${orders} orders)`,
  };
}

// ---------------------------------------------------------------- main

const server = await startServer({ inspectorPort: 0 });
/** @type {{ target: InspectorTarget, cdp: Cdp }[]} */
const clients = [];
let exitCode = 1;
try {
  printMachine({ server: server.mode, inspector: server.inspectorUrl ?? "-" });
  console.log(`\n## profile:cpu  scenario=${SCENARIO} seconds=${SECONDS} connections=${CONNECTIONS} interval=${INTERVAL_US}us`);
  const storm = await setupScenario(server);

  if (!server.inspectorUrl) throw new Error("the server has no V8 inspector");
  const inspector = new URL(server.inspectorUrl);
  const listUrl = `http://${inspector.host}/json`;
  assertLoopback(listUrl);
  const list = /** @type {InspectorTarget[]} */ (await (await fetch(listUrl, { signal: AbortSignal.timeout(5000) })).json());
  /** @param {InspectorTarget} t */
  const wanted = (t) => t.id.startsWith("core:user:") || (WITH_D1 && t.id === "d1:db");
  const targets = list.filter(wanted);
  console.log(`\ninspector targets: ${list.map((t) => t.id).join(", ")}`);
  console.log(`profiling: ${targets.map((t) => t.id).join(", ")}`);
  if (!targets.some((t) => t.id.startsWith("core:user:"))) throw new Error("no core:user:* (Worker) target in the inspector's list");

  for (const t of targets) {
    const cdp = await cdpConnect(t.webSocketDebuggerUrl);
    clients.push({ target: t, cdp });
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
  }
  for (const { cdp } of clients) await cdp.send("Profiler.start");

  const run = await load({
    url: server.url,
    connections: CONNECTIONS,
    duration: SECONDS,
    maxSeconds: SECONDS + 30,
    timeout: 60,
    ...storm,
  });

  const profiles = [];
  for (const c of clients) profiles.push({ ...c, profile: (await c.cdp.send("Profiler.stop", {}, 120_000)).profile });

  printTable("Profiled storm (inspector attached: slower than a bench run)", [run]);
  printLoad();

  mkdirSync(PROFILES_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const bundle = join(BENCH_DIR, APP_ROOT === ROOT ? "dist" : "dist-preview", "index.js"); // where startServer bundled it
  const mapBundle = sourceMapper(bundle);
  /**
   * @param {string} url
   * @param {number} line
   * @param {number} col
   */
  const mapSource = (url, line, col) => (basename(url) === "index.js" ? mapBundle(line, col) : undefined);
  for (const { target, profile } of profiles) {
    const file = join(PROFILES_DIR, `${SCENARIO}-${stamp}-${target.id.replace(/[^A-Za-z0-9._-]+/g, "_")}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    console.log(`\nwrote ${file}`);
    printTop(target, profile, mapSource);
  }
  exitCode = 0;
} catch (err) {
  console.error(err);
} finally {
  for (const { cdp } of clients) cdp.close();
  await server.stop();
}
process.exit(exitCode);
