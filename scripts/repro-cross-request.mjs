#!/usr/bin/env node
/**
 * Placement storm on the bench server that used to end in "Cannot perform I/O on behalf of a
 * different request" 500s (group commit woke its members from the sender's request; see
 * src/shared/group-commit.ts and docs/ARCHITECTURE.md §7). One product (K = 1) with stock for
 * every order, users with balance, --orders one-line `POST /api/v1/orders` at --connections, in
 * rounds of --round; after each round, the statuses so far and the server log's lines that name
 * "different request" (workerd's own error lines: the app's request log said 201 for those).
 * At the end, the isolate's group-commit counters (batching kept). Exit code 1 on any 500 or such line.
 *
 *   node scripts/repro-cross-request.mjs [--orders 20000] [--connections 50] [--round 2000] [--users 2000] [--stop-on-first]
 *
 * Before the fix it failed from about 7,600 placements on (5,646 of 20,000 answered 500); with
 * `MINIFLARE_WORKERD_V8_FLAGS=--no-turbofan` it passed on the same code.
 */
import { readFileSync } from "node:fs";
import { arg } from "./bench/lib/args.mjs";
import { seedUsersD1 } from "./bench/lib/fixtures.mjs";
import { api, d1Groups } from "./bench/lib/http.mjs";
import { load } from "./bench/lib/load.mjs";
import { startServer } from "./bench/server.mjs";

const ORDERS = arg("orders", 20_000);
const CONNECTIONS = arg("connections", 50);
const ROUND = arg("round", 2000);
const USERS = arg("users", 2000);
const STOP_ON_FIRST = process.argv.includes("--stop-on-first");

const server = await startServer(process.env.REPRO_LOG_LEVEL ? { vars: { LOG_LEVEL: process.env.REPRO_LOG_LEVEL } } : {});
console.log(`server ${server.url} log ${server.logFile}`);
const countLog = () => {
  const lines = readFileSync(server.logFile, "utf8").split("\n");
  return { different: lines.filter((l) => l.includes("different request")).length };
};
try {
  const product = await api(server.url, "POST", "/api/v1/admin/products", { name: "repro", price: 1000, stock: ORDERS }, { admin: true });
  if (product.status !== 201) throw new Error(`product: ${product.status} ${JSON.stringify(product.json)}`);
  const productId = product.json.data.productId;
  const ids = await seedUsersD1(server.d1, USERS, { initialBalance: 1_000_000 });
  /** @type {Record<string, number>} */
  const total = {};
  let sent = 0;
  while (sent < ORDERS) {
    const amount = Math.min(ROUND, ORDERS - sent);
    const base = sent;
    const run = await load({
      url: server.url,
      path: "/api/v1/orders",
      method: "POST",
      amount,
      connections: CONNECTIONS,
      maxSeconds: 600,
      build: (i) => ({ body: { userId: ids[(base + i) % ids.length], orderProducts: [{ productId, quantity: 1 }] } }),
      label: `placements ${base}..${base + amount}`,
    });
    sent += amount;
    for (const [k, v] of Object.entries(run.statusCounts)) total[k] = (total[k] ?? 0) + v;
    const { different } = countLog();
    console.log(
      `${sent} sent: round ${JSON.stringify(run.statusCounts)} ${JSON.stringify(run.errorCodes)} rps ${run.rps.toFixed(0)}; total ${JSON.stringify(total)}; "different request" lines ${different}`,
    );
    if (STOP_ON_FIRST && different > 0) break;
  }
  // Group commit kept batching: batches and requests per kind in this isolate.
  console.log(`d1 groups: ${JSON.stringify(await d1Groups(server.url))}`);
  const stockRow = await server.d1.first("SELECT stock FROM products WHERE id = ?", productId);
  const { different } = countLog();
  console.log(`done: ${JSON.stringify(total)}; "different request" lines ${different}; products.stock ${stockRow?.stock}`);
  if (different > 0 || (total[500] ?? 0) > 0) process.exitCode = 1;
} finally {
  await server.stop();
}
