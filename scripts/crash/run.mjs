#!/usr/bin/env node
/**
 * `npm run test:crash`: a kill -9 test of our own (issue 11, item 7).
 *
 * 1. Starts the production-like local server (scripts/bench/server.mjs, the deploy bundle in
 *    workerd through Miniflare) as its own process group, on a state dir that is kept.
 * 2. Seeds users, products and a coupon; runs a mixed storm (scripts/crash/storm.mjs) and, once
 *    KILL_AFTER answers have come back, SIGKILLs the whole process group (node and workerd).
 * 3. Restarts on the same persisted D1/DO state; runs the every-minute cron with a scheduled time
 *    CRON_AHEAD_MS in the future, so stale placements (2 min), unpaid orders (15 min) and the settle
 *    grace (30 s) have aged out without waiting (the jobs take their "now" from the trigger), until no
 *    order is left half-way (at most MAX_CRON_RUNS runs).
 * 4. Retries every charge with its Idempotency-Key, then checks (scripts/crash/checks.mjs) and
 *    lets a fresh user order and pay. Prints a summary; exits 1 on any violation.
 * Only 127.0.0.1 is contacted; the request count is bounded (about 9 per user) and so is the time.
 */
import { spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BENCH_DIR, startServer } from "../bench/server.mjs";
import { checkAll, freshUserCanBuy } from "./checks.mjs";
import { call, runStorm, seed } from "./storm.mjs";

/** The kill lands after this many answers: random in 150..300 (the storm gets about 330 before it ends) unless set. */
const KILL_AFTER = Number(process.env.CRASH_KILL_AFTER ?? 150 + Math.floor(Math.random() * 151));
const CRON_AHEAD_MS = 20 * 60_000;
const MAX_CRON_RUNS = 10;
let cronRuns = 0;

/**
 * CRASH_INJECT=double-charge applies one acknowledged charge a second time behind the API's back,
 * to show the checks catch it (the run must then fail).
 */
/**
 * @param {{ d1: import("../bench/lib/fixtures.mjs").LocalD1 }} server
 * @param {import("./storm.mjs").Ledger} ledger
 */
async function injectDoubleCharge(server, ledger) {
  const c = ledger.charges.find((x) => x.acked);
  if (!c) throw new Error("CRASH_INJECT=double-charge: no acknowledged charge to apply twice");
  await server.d1.raw.batch([
    server.d1.raw.prepare("UPDATE user_balances SET balance = balance + ?1 WHERE user_id = ?2").bind(c.amount, c.userId),
    server.d1.raw
      .prepare(
        "INSERT INTO point_history (user_id, type, amount, balance_after, created_at) SELECT ?2, 'CHARGE', ?1, balance, ?3 FROM user_balances WHERE user_id = ?2",
      )
      .bind(c.amount, c.userId, Date.now()),
  ]);
}
const stateDir = join(BENCH_DIR, "crash", `${Date.now()}-${process.pid}`);
mkdirSync(stateDir, { recursive: true });

/** Phase 1's server: a child in its own process group, so one kill takes node and workerd together. */
async function startKillable() {
  const child = spawn(process.execPath, ["scripts/bench/server.mjs", "--keep-state", "--state-dir", stateDir, "--seconds", "600"], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start in 180 s")), 180_000);
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line).url);
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  const exited = new Promise((r) => child.once("exit", (code, signal) => r(signal ?? code)));
  const pid = child.pid;
  if (pid === undefined) throw new Error("the server process did not start");
  return { url, kill: () => process.kill(-pid, "SIGKILL"), exited };
}

const t0 = Date.now();
const first = await startKillable();
const world = await seed(first.url);
/** @type {number | undefined} */
let killedAt;
const ledger = await runStorm(first.url, world, (answered) => {
  if (answered === KILL_AFTER && killedAt === undefined) {
    killedAt = answered;
    first.kill();
  }
});
// The storm ended before the kill point: stop the server the same way (the run is reported as a violation).
if (killedAt === undefined) first.kill();
const signal = await first.exited;

const server = await startServer({ build: false, keepState: true, stateDir, quiet: true });
/** @type {string[]} */
let violations;
/** @type {import("./checks.mjs").Retry[]} */
let retries = [];
try {
  // Until nothing is left half-way: no PENDING placement, no unpaid order, no terminal order its objects were not told.
  for (cronRuns = 1; cronRuns <= MAX_CRON_RUNS; cronRuns++) {
    await server.scheduled("* * * * *", Date.now() + CRON_AHEAD_MS);
    const left = await server.d1.first(
      "SELECT count(*) AS n FROM orders WHERE status IN ('PENDING','NOT_PAID') OR (status != 'NOT_PAID' AND closed_at IS NULL)",
    );
    if (left.n === 0) break;
  }
  if (process.env.CRASH_INJECT === "double-charge") await injectDoubleCharge(server, ledger);
  retries = [];
  for (const charge of ledger.charges) {
    retries.push({
      charge,
      res: await call(
        server.url,
        "POST",
        "/points/charge",
        { userId: charge.userId, amount: charge.amount },
        { "idempotency-key": charge.key },
      ),
    });
  }
  violations = await checkAll(server, world, ledger, retries);
  const fresh = await freshUserCanBuy(server.url, world);
  if (fresh) violations.push(fresh);
} finally {
  await server.stop();
}

/** @param {{ acked?: boolean }[]} xs */
const acked = (xs) => xs.filter((x) => x.acked !== false).length;
const summary = {
  killed:
    killedAt !== undefined ? `SIGKILL after ${killedAt} answers (server exit: ${signal})` : `storm ended before the kill at ${KILL_AFTER}`,
  answered: ledger.answered,
  cutOff: ledger.unanswered,
  charges: {
    sent: ledger.charges.length,
    acknowledged: acked(ledger.charges),
    replayedOnRetry: retries.filter((r) => r.res.replayed).length,
  },
  couponIssues: ledger.issues.length,
  orders: ledger.orders.length,
  payments: ledger.payments.length,
  cancels: ledger.cancels.length,
  cronRuns,
  seconds: Math.round((Date.now() - t0) / 1000),
  violations: violations.length,
};
console.log(JSON.stringify(summary, null, 2));
for (const v of violations) console.log(`VIOLATION: ${v}`);
if (killedAt === undefined) console.log("VIOLATION: the server was never killed mid-storm (raise the storm or lower CRASH_KILL_AFTER)");
if (ledger.unanswered === 0) console.log("VIOLATION: the kill cut no request off (nothing was in flight)");
const ok = violations.length === 0 && killedAt !== undefined && ledger.unanswered > 0;
if (ok) rmSync(stateDir, { recursive: true, force: true });
else console.log(`state kept for inspection: ${stateDir}`);
console.log(ok ? "crash test: PASS" : "crash test: FAIL");
process.exit(ok ? 0 : 1);
