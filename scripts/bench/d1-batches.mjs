#!/usr/bin/env node
/**
 * `npm run bench:d1-batches`: what local D1 charges for the batch shapes of a placement, measured
 * from inside workerd on a fresh D1 with every migration and 1,000 users / 5 products (issue 18
 * item 2: one D1 write per placement, or two group-committed ones?).
 *
 * For each shape, `--batches` batches of `size` requests go out one after another (one in flight,
 * like a group-commit queue) and the Worker times them (scripts/bench/d1-batches/worker.js):
 *   empty    one `SELECT 1` per request: the fixed cost of a batch (the call into the D1 object, its
 *            transaction, the commit) shows at size 1
 *   attempt  placement's first batch (validate, insert PENDING + lines, coupon read), 13 per batch
 *   commit   placement's second batch (flip PENDING -> NOT_PAID), 8 per batch
 *   single   the one-write alternative: the order inserted NOT_PAID with its lines after the reservations
 * Group sizes default to the means `bench:orders` printed (attempt ~13, commit ~8). Prints ms per
 * batch and per request, and each per-request cost as a ratio to the same run's empty batch of size 1
 * (this bench's ceiling: nothing is cheaper than a batch that does nothing). Runs alone: other load
 * on the machine moves every number.
 *
 * Options: --runs 3 --batches 100 --attempt-size 13 --commit-size 8
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { printMachine, printLoad } from "./lib/machine.mjs";
import { APP_ROOT, BENCH_DIR } from "./server.mjs";

exitWithHelpIfAsked(import.meta.url);

const RUNS = arg("runs", 3);
const BATCHES = arg("batches", 100);
const ATTEMPT_SIZE = arg("attempt-size", 13);
const COMMIT_SIZE = arg("commit-size", 8);

const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
const stateDir = join(BENCH_DIR, "state", `d1-batches-${process.pid}`);
const mf = new Miniflare(
  convertV4MiniflareOptions({
    resourcePersistencePath: stateDir,
    workers: [
      {
        name: "d1-batches",
        modules: true,
        scriptPath: join(APP_ROOT, "scripts/bench/d1-batches/worker.js"),
        d1Databases: ["DB"],
        compatibilityDate: "2025-09-01",
      },
    ],
  }),
);
let exitCode = 1;
try {
  const url = await mf.ready;
  /** @param {string[]} statements */
  const sql = async (statements) => {
    const res = await fetch(new URL("/sql", url), { method: "POST", body: JSON.stringify(statements) });
    if (!res.ok) throw new Error(`setup: ${res.status} ${await res.text()}`);
  };
  const migrations = join(APP_ROOT, "migrations");
  for (const file of readdirSync(migrations)
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    const text = readFileSync(join(migrations, file), "utf8");
    await sql(
      text
        .split("--> statement-breakpoint")
        .map((s) => s.trim())
        .filter(Boolean),
    );
  }
  const now = Date.now();
  await sql([
    `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 1000) INSERT INTO users (name, created_at) SELECT 'u' || n, ${now} FROM seq`,
    `INSERT INTO user_balances (user_id, balance, updated_at) SELECT id, 1000000, ${now} FROM users`,
    ...[1, 2, 3, 4, 5].map(
      (i) => `INSERT INTO products (name, price, stock, created_at, updated_at) VALUES ('p${i}', 100, 1000000, ${now}, ${now})`,
    ),
  ]);

  printMachine({ server: "Miniflare/workerd, one Worker with a local D1 (on disk under .bench/state)" });
  console.log(`\n## bench:d1-batches  runs=${RUNS} batches=${BATCHES} attempt=${ATTEMPT_SIZE}/batch commit=${COMMIT_SIZE}/batch`);
  /** @param {string} variant @param {number} size */
  const time = async (variant, size) => {
    const res = await fetch(new URL(`/?variant=${variant}&size=${size}&batches=${BATCHES}`, url));
    if (!res.ok) throw new Error(`${variant}: ${res.status} ${await res.text()}`);
    return /** @type {{ msPerBatch: number, msPerRequest: number }} */ (await res.json());
  };
  const shapes = /** @type {[string, string, number][]} */ ([
    ["empty x1 (the ceiling)", "empty", 1],
    [`empty x${COMMIT_SIZE}`, "empty", COMMIT_SIZE],
    [`attempt x${ATTEMPT_SIZE}`, "attempt", ATTEMPT_SIZE],
    [`commit x${COMMIT_SIZE}`, "commit", COMMIT_SIZE],
    [`single x${ATTEMPT_SIZE}`, "single", ATTEMPT_SIZE],
  ]);
  /** @type {Map<string, number[]>} */
  const perRequest = new Map(shapes.map(([label]) => [label, []]));
  /** @type {Map<string, number[]>} */
  const perBatch = new Map(shapes.map(([label]) => [label, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const [label, variant, size] of shapes) {
      const r = await time(variant, size);
      perRequest.get(label)?.push(r.msPerRequest);
      perBatch.get(label)?.push(r.msPerBatch);
    }
  }
  /** @param {number[]} xs */
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const ceiling = median(perRequest.get(shapes[0][0]) ?? []);
  console.log("\n| shape | ms per batch (median) | ms per request (median) | per request / empty x1 |");
  console.log("|---|---:|---:|---:|");
  for (const [label] of shapes) {
    const req = median(perRequest.get(label) ?? []);
    console.log(`| ${label} | ${median(perBatch.get(label) ?? []).toFixed(2)} | ${req.toFixed(3)} | ${(req / ceiling).toFixed(3)} |`);
  }
  const two = median(perRequest.get(shapes[2][0]) ?? []) + median(perRequest.get(shapes[3][0]) ?? []);
  const one = median(perRequest.get(shapes[4][0]) ?? []);
  console.log(`\nd1 placement.two-writes ms=${two.toFixed(3)} placement.one-write ms=${one.toFixed(3)} saved=${(two - one).toFixed(3)}`);
  printLoad("end");
  exitCode = 0;
} finally {
  await mf.dispose();
  rmSync(stateDir, { recursive: true, force: true });
}
process.exit(exitCode);
