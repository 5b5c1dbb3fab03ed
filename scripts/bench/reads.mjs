#!/usr/bin/env node
/**
 * `npm run bench:reads`: a read storm on one product's detail (`GET /api/v1/products/{id}`),
 * served from the edge cache against not, each as a share of the same run's `/health`:
 *   - cached: the plain GET; after the first miss every answer comes from `caches.default`
 *     (Miniflare's local Cache API), no services built, no D1 round trip;
 *   - uncached: the same GET sending an `x-d1-bookmark`, which skips the cache lookup (what a
 *     client asking for read-your-writes gets): a D1 session from the bookmark, one D1 read,
 *     the ETag, and the refreshed cache entry written back, i.e. a miss's full cost;
 *   - revalidated: the plain GET with `If-None-Match` of the current ETag: 304 from the cache.
 * Checks: every answer is 200 (304 for the revalidation), the cached run's answers say
 * `cache;desc="hit"` with 0 hops but one miss per 5 s key bucket, and the uncached run's say
 * `bypass` with 1 hop.
 *
 * Options: --requests 20000 --connections 100 --warmup 1000
 */
import { startServer } from "./server.mjs";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { api } from "./lib/http.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { headerValue } from "./lib/server-timing.mjs";
import { healthCeiling, load } from "./lib/load.mjs";
import { printHops, printRatio, printTable } from "./lib/report.mjs";
import { Checks } from "./lib/checks.mjs";

exitWithHelpIfAsked(import.meta.url);

const REQUESTS = arg("requests", 20_000);
const CONNECTIONS = arg("connections", 100);
const WARMUP = arg("warmup", 1_000);

const server = await startServer();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  console.log(`\n## bench:reads  requests=${REQUESTS} connections=${CONNECTIONS} warmup=${WARMUP}`);
  const created = await api(
    server.url,
    "POST",
    "/api/v1/admin/products",
    { name: "bench-read", description: "a hot product", price: 1000, stock: 100 },
    { admin: true },
  );
  if (created.status !== 201) throw new Error(`product: ${created.status} ${JSON.stringify(created.json)}`);
  const path = `/api/v1/products/${created.json.data.productId}`;
  // A bookmark for the uncached run: any answer that touched D1 carries one.
  const probe = await fetch(new URL(path, server.url), { headers: { "x-d1-bookmark": "" } });
  const bookmark = probe.headers.get("x-d1-bookmark");
  const etag = probe.headers.get("etag");
  await probe.arrayBuffer();
  if (!bookmark || !etag) throw new Error(`no bookmark/etag on ${path}: ${probe.status}`);

  /**
   * @param {Record<string, number>} into
   * @returns {(status: number, json: unknown, ctx: unknown, headers: import("autocannon").RawHeaders) => void}
   */
  const cacheStates = (into) => (status, _json, _ctx, headers) => {
    const m = /cache;desc="(\w+)"/.exec(headerValue(headers, "server-timing") ?? "");
    const k = `${status} ${m?.[1] ?? "none"}`;
    into[k] = (into[k] ?? 0) + 1;
  };
  // Warm-up (JIT, connections, first miss) on the same path, not measured.
  await load({ url: server.url, path, connections: CONNECTIONS, amount: WARMUP, label: "warm-up" });
  await healthCeiling(server.url, { connections: CONNECTIONS, amount: WARMUP, label: "warm-up /health" });

  /** @type {Record<"cached" | "uncached" | "revalidated", Record<string, number>>} answers by "<status> <cache state>" */
  const seen = { cached: {}, uncached: {}, revalidated: {} };
  const cached = await load({
    url: server.url,
    path,
    connections: CONNECTIONS,
    amount: REQUESTS,
    onResponse: cacheStates(seen.cached),
    label: `GET ${path.replace(/\d+$/, "{id}")} (edge cache)`,
  });
  const uncached = await load({
    url: server.url,
    path,
    headers: { "x-d1-bookmark": bookmark },
    connections: CONNECTIONS,
    amount: REQUESTS,
    onResponse: cacheStates(seen.uncached),
    label: `GET ${path.replace(/\d+$/, "{id}")} (no cache: x-d1-bookmark, D1 read)`,
  });
  const revalidated = await load({
    url: server.url,
    path,
    headers: { "if-none-match": etag },
    connections: CONNECTIONS,
    amount: REQUESTS,
    onResponse: cacheStates(seen.revalidated),
    label: `GET ${path.replace(/\d+$/, "{id}")} (If-None-Match: 304 from the cache)`,
  });
  const health = await healthCeiling(server.url, { connections: CONNECTIONS, amount: REQUESTS });

  printTable("Read storm on one product (same run, same connections and request count)", [cached, uncached, revalidated, health]);
  printHops([cached, uncached, revalidated]);
  printRatio(cached, health, { name: "reads.cached" });
  printRatio(uncached, health, { name: "reads.uncached" });
  printRatio(revalidated, health, { name: "reads.revalidated-304" });
  console.log(`\ncached / uncached: ${(cached.rps / uncached.rps).toFixed(2)} x`);
  printLoad();

  // The key's 5 s bucket turns during a run: the first request after each turn misses and reads
  // D1 once (concurrent ones share its answer), so at most one miss per bucket the run spans.
  /** @param {import("./lib/load.mjs").LoadRun} run */
  const turns = (run) => Math.ceil(run.elapsedS / 5) + 1;
  /**
   * @param {import("./lib/load.mjs").LoadRun} run
   * @param {keyof typeof seen} key
   * @param {number} status
   */
  const fromCache = (run, key, status) => {
    const s = seen[key];
    const misses = s[`${status} miss`] ?? 0;
    return run.responses === REQUESTS && (s[`${status} hit`] ?? 0) + misses === REQUESTS && misses <= turns(run);
  };
  const c = new Checks("Checks");
  c.check(
    `cached run: every answer 200 from the cache, but one miss per 5 s bucket`,
    fromCache(cached, "cached", 200),
    JSON.stringify(seen.cached),
  );
  c.check(
    "uncached run: every answer 200 read from D1",
    uncached.responses === REQUESTS && seen.uncached["200 bypass"] === REQUESTS,
    JSON.stringify(seen.uncached),
  );
  c.check(
    "revalidated run: every answer 304, but one miss per 5 s bucket",
    fromCache(revalidated, "revalidated", 304),
    JSON.stringify(seen.revalidated),
  );
  c.check(
    "cached answers made no round trip, but the misses one",
    (cached.hops?.histogram["1"] ?? 0) === (seen.cached["200 miss"] ?? 0) && (cached.hops?.max ?? Infinity) <= 1,
    JSON.stringify(cached.hops?.histogram),
  );
  c.check(
    "uncached answers made exactly one",
    uncached.hops?.mean === 1 && uncached.hops?.max === 1,
    JSON.stringify(uncached.hops?.histogram),
  );
  c.print();
  exitCode = c.ok() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
