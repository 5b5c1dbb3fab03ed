#!/usr/bin/env node
/**
 * `npm run bench:baseline`: the ceilings everything else is compared with, in one run:
 *   1. `GET /health` on bare `workerd serve --experimental wrangler.json` (no D1 binding
 *      possible in that mode, so only /health), the number docs/ARCHITECTURE.md §6 quotes;
 *   2. `GET /health` on the bench server (Miniflare/workerd with D1 and DOs);
 *   3. `GET /api/v1/products?page=0&size=10` on the bench server (two D1 reads) with 50 products.
 *
 * Options: --connections 100 --duration 10 --no-bare
 */
import { startBareWorkerd, startServer } from "./server.mjs";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { adminHeaders } from "./lib/http.mjs";
import { printMachine } from "./lib/machine.mjs";
import { healthCeiling, load } from "./lib/load.mjs";
import { printRatio, printTable } from "./lib/report.mjs";

exitWithHelpIfAsked(import.meta.url);

const CONNECTIONS = arg("connections", 100);
const DURATION = arg("duration", 10);
const BARE = !process.argv.includes("--no-bare");

const rows = [];
let exitCode = 1;

printMachine({ server: "see the run labels" });
console.log(`\n## bench:baseline  connections=${CONNECTIONS} duration=${DURATION}s`);

if (BARE) {
  const bare = await startBareWorkerd();
  try {
    rows.push(
      await healthCeiling(bare.url, {
        connections: CONNECTIONS,
        duration: DURATION,
        label: "GET /health, bare workerd --experimental (no D1)",
      }),
    );
  } finally {
    await bare.stop();
  }
}

const server = await startServer();
try {
  const products = await load({
    url: server.url,
    path: "/api/v1/admin/products",
    method: "POST",
    headers: adminHeaders(),
    connections: 10,
    amount: 50,
    build: (i) => ({ body: { name: `bench-product-${i}`, price: 1000 + i * 10, stock: 1000 } }),
    label: "POST /admin/products (setup, 50)",
  });
  if (products.statusCounts[201] !== 50) throw new Error(`product setup failed: ${JSON.stringify(products.statusCounts)}`);
  const health = await healthCeiling(server.url, {
    connections: CONNECTIONS,
    duration: DURATION,
    label: "GET /health, bench server (Miniflare/workerd)",
  });
  const list = await load({
    url: server.url,
    path: "/api/v1/products?page=0&size=10",
    connections: CONNECTIONS,
    duration: DURATION,
    label: "GET /products?page=0&size=10, bench server",
  });
  rows.push(health, list);
  printTable("Ceilings (same run)", rows);
  if (BARE) printRatio(health, rows[0]);
  printRatio(list, health);
  exitCode = rows.every((r) => !r.socketErrors && !r.timeouts && Object.keys(r.statusCounts).every((s) => s === "200")) ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
