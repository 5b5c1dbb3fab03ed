#!/usr/bin/env node
/**
 * `npm run sim:measure`: the Durable Object service time that `npm run sim:hot-coupon` uses.
 *
 * Starts the bench server (scripts/bench/server.mjs: the `wrangler deploy --dry-run` bundle in
 * Miniflare/workerd, fresh D1/DO state), seeds users into D1, creates coupons through the admin
 * API (which primes their CouponIssuer objects), and sends `POST /api/v1/coupons/issue` at LOW
 * concurrency (1 and 4 connections, one request in flight per connection), so queueing at the
 * object is negligible and what the Worker measures around its RPC is the object's service time.
 *
 * From every response's `Server-Timing` header it takes the `do` metric
 * (`do;desc="1 call";dur=<ms>` or `do;desc="1 call (+1 nested)";dur=<ms>`) and sorts it into:
 *
 *   no_nested  the DO call made no nested round trip: refusals the object decides alone from its
 *              own SQLite storage (COUPON_ALREADY_ISSUED: the winners asked again on a coupon
 *              that is far from sold out; COUPON_SOLD_OUT answered by the object itself).
 *   win        201: the DO part includes the object's awaited group-commit D1 write (+1 nested).
 *
 * Responses with no `do` metric at all (the Worker's sold-out memo answered COUPON_SOLD_OUT with
 * 0 DO calls) are counted as excluded, never as samples.
 *
 * Which figure the sim uses, and why: a Durable Object is single-threaded, but it is only *busy*
 * for its own CPU and local storage time. While a win awaits its D1 write, the object's input
 * gate is open and it serves other requests (and wins share one D1 batch: group commit), so the
 * time a win holds the object is far less than its `do` dur. The no-nested-I/O `do` time is the
 * best available estimate of the busy time per request, and an upper bound for a refusal's: it
 * is measured by the Worker around the RPC, so it also holds the RPC dispatch, (de)serialisation
 * and, because the Workers clock only advances at I/O, any Worker CPU since the request arrived.
 * A win's own busy work is somewhat more than a refusal's (two more SQLite statements in the
 * decision transaction, its share of the batch bookkeeping); docs/PERFORMANCE.md says so and
 * the sim prints the service time that would break each configuration.
 *
 * Writes quantiles (p50, p90, p99, mean, n, and a quantile grid for sampling) per figure and
 * concurrency to `--out` (default scripts/sim/do-service-time.json), with the command, date,
 * git commit, machine and load average.
 *
 * Benchmarks need the machine to themselves: run it as `flock /tmp/machine.lock npm run sim:measure`.
 *
 * Options: --refusals 5000 (per concurrency) --wins 1000 (per concurrency) --soldout 300
 *          --concurrency 1,4 --warmup 500 --out scripts/sim/do-service-time.json
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { arg } from "../bench/lib/args.mjs";
import { api } from "../bench/lib/http.mjs";
import { loadavg, machine } from "../bench/lib/machine.mjs";
import { headerValue, parseServerTiming } from "../bench/lib/server-timing.mjs";
import { load } from "../bench/lib/load.mjs";
import { statusSummary } from "../bench/lib/report.mjs";
import { isoWithOffset, seedUsersD1 } from "../bench/lib/fixtures.mjs";
import { ROOT, startServer } from "../bench/server.mjs";

const REFUSALS = arg("refusals", 5000);
const WINS = arg("wins", 1000);
const SOLDOUT = arg("soldout", 300);
const WARMUP = arg("warmup", 500);
const CONCURRENCY = String(arg("concurrency", "1,4"))
  .split(",")
  .map(Number)
  .filter((n) => n > 0);
const OUT = resolve(arg("out", resolve(ROOT, "scripts/sim/do-service-time.json")));
const ISSUE_PATH = "/api/v1/coupons/issue";
/** The figure the sim uses by default (see the header comment). */
const SIM_FIGURE = `no_nested_c${CONCURRENCY[0]}`;

/** The command line this process was started with, and a `flock` wrapper if an ancestor is one. */
function invocation() {
  const args = process.argv.slice(2);
  const npm = process.env.npm_lifecycle_event
    ? `npm run ${process.env.npm_lifecycle_event}${args.length ? ` -- ${args.join(" ")}` : ""}`
    : `node ${relative(ROOT, process.argv[1])} ${args.join(" ")}`.trim();
  let wrapper = null;
  try {
    let pid = process.ppid;
    for (let i = 0; i < 8 && pid > 1; i++) {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
      if (cmd.some((c) => /(^|\/)flock$/.test(c))) {
        wrapper = cmd.join(" ");
        break;
      }
      pid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[1]);
    }
  } catch {
    /* not Linux, or the chain ended: no wrapper recorded */
  }
  return { command: npm, wrapper };
}

function gitCommit() {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: ROOT, encoding: "utf8" }).trim();
    return dirty ? `${head} (+ uncommitted changes)` : head;
  } catch {
    return "?";
  }
}

const uptime = () => {
  try {
    return execFileSync("uptime", { encoding: "utf8" }).trim();
  } catch {
    return `load average: ${loadavg()}`;
  }
};

/**
 * Nearest-rank quantile of a sorted array (q in 0..1).
 * @param {number[]} sorted
 * @param {number} q
 */
function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  if (q <= 0) return sorted[0] ?? NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] ?? NaN;
}

/** @typedef {{ dur: number, code: string }} Sample one object call: its duration (ms) and the answer */

/**
 * Summary of one figure: the quantiles the sim and the docs quote, and a grid for inverse-CDF sampling.
 * @param {Sample[]} samples
 */
function summarise(samples) {
  const durs = samples.map((s) => s.dur).sort((a, b) => a - b);
  const n = durs.length;
  const mean = n ? durs.reduce((a, b) => a + b, 0) / n : NaN;
  /** @type {Record<string, number>} */
  const byCode = {};
  for (const s of samples) byCode[s.code] = (byCode[s.code] ?? 0) + 1;
  // Every distinct measured value and its count: the Workers clock ticks in whole ms, so this is the
  // exact empirical distribution (the sim samples from it, or fits a lognormal to it).
  /** @type {Record<number, number>} */
  const histogram = {};
  for (const d of durs) histogram[d] = (histogram[d] ?? 0) + 1;
  // q = 0, 0.01, ..., 0.99, then 0.991 ... 0.999, then 1 (the max): the tail is where queueing lives.
  const grid = [];
  for (let i = 0; i < 100; i++) grid.push(i / 100);
  for (let i = 1; i < 10; i++) grid.push(0.99 + i / 1000);
  grid.push(1);
  /** @param {number} x */
  const r = (x) => Math.round(x * 1000) / 1000;
  return {
    n,
    mean: r(mean),
    p50: quantile(durs, 0.5),
    p90: quantile(durs, 0.9),
    p99: quantile(durs, 0.99),
    p999: quantile(durs, 0.999),
    min: durs[0] ?? NaN,
    max: durs[n - 1] ?? NaN,
    byCode,
    histogram: Object.entries(histogram)
      .map(([v, c]) => [Number(v), c])
      .sort((a, b) => a[0] - b[0]),
    quantiles: grid.map((q) => [r(q), quantile(durs, q)]),
  };
}

const inv = invocation();
const started = new Date();
const loadStart = uptime();
const server = await startServer({ quiet: true });
let exitCode = 1;
try {
  console.log(`# sim:measure: Durable Object service time from Server-Timing (${started.toISOString()})`);
  console.log(
    `command: ${inv.command}${inv.wrapper ? ` (under: ${inv.wrapper})` : " (no flock wrapper found among the parent processes)"}`,
  );
  console.log(`server: ${server.mode}`);
  console.log(`uptime at start: ${loadStart}`);

  const maxC = Math.max(...CONCURRENCY);
  // Users: per concurrency WINS winners (asked again for the refusals), SOLDOUT for the sold-out probe, WARMUP.
  const nUsers = CONCURRENCY.length * WINS + SOLDOUT + 1 + WARMUP;
  const users = await seedUsersD1(server.d1, nUsers);
  let u = 0;
  /** @param {number} n */
  const take = (n) => {
    const taken = users.slice(u, u + n);
    u += n;
    return taken;
  };

  const now = Date.now();
  /**
   * @param {string} name
   * @param {number} quantity
   * @returns {Promise<number>} the coupon id
   */
  const coupon = async (name, quantity) => {
    const r = await api(
      server.url,
      "POST",
      "/api/v1/admin/coupons",
      {
        name,
        discountType: "AMOUNT",
        discountValue: 1000,
        quantity,
        startsAt: isoWithOffset(now - 60_000),
        endsAt: isoWithOffset(now + 86_400_000),
      },
      { admin: true },
    );
    if (r.status !== 201) throw new Error(`coupon ${name}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.data.couponId;
  };

  /** @type {Record<string, Sample[]>} figure -> samples */
  const samples = {};
  /** @type {{ noDoCall: number, noHeader: number, other: Record<string, number> }} */
  const excluded = { noDoCall: 0, noHeader: 0, other: {} };
  /** @type {import("../bench/lib/load.mjs").LoadRun[]} */
  const runs = [];
  /**
   * @param {string} figureSuffix
   * @returns {NonNullable<import("../bench/lib/load.mjs").LoadOptions["onResponse"]>}
   */
  const collect = (figureSuffix) => (status, json, _ctx, headers) => {
    const value = headerValue(headers, "server-timing");
    if (value === undefined) return void excluded.noHeader++;
    const t = parseServerTiming(value);
    const code = status === 201 ? "201" : `${status} ${json?.error ?? "?"}`;
    const d = t.do;
    if (!d || d.count === undefined || !(d.count >= 1) || d.dur === undefined || !Number.isFinite(d.dur)) return void excluded.noDoCall++;
    const nested = d.nested + (t.d1?.nested ?? 0);
    let figure;
    if (d.count === 1 && nested === 0 && !t.d1 && status === 409) figure = "no_nested";
    else if (d.count === 1 && status === 201 && nested >= 1) figure = "win";
    if (!figure) {
      const key = `${code} do=${d.count}(+${d.nested}) d1=${t.d1?.count ?? 0}`;
      excluded.other[key] = (excluded.other[key] ?? 0) + 1;
      return;
    }
    const key = `${figure}_${figureSuffix}`;
    samples[key] ??= [];
    samples[key].push({ dur: d.dur, code });
  };
  /**
   * @param {string} label
   * @param {number} couponId
   * @param {number[]} list
   * @param {number} connections
   * @param {string} [suffix]
   */
  const run = async (label, couponId, list, connections, suffix) => {
    const r = await load({
      url: server.url,
      path: ISSUE_PATH,
      method: "POST",
      connections,
      amount: list.length,
      maxSeconds: 120,
      timeout: 30,
      build: (i) => ({ body: { userId: list[i], couponId } }),
      onResponse: suffix ? collect(suffix) : undefined,
      label,
    });
    runs.push(r);
    console.log(
      `- ${label}: ${r.responses} responses in ${r.elapsedS.toFixed(1)} s (${Math.round(r.rps)} req/s), client p50 ${r.p50} ms p99 ${r.p99} ms; ${statusSummary(r)} ${JSON.stringify(r.errorCodes)}`,
    );
    return r;
  };

  // Warm-up (not measured): the same request shapes on their own coupon, so the isolate, the JIT and
  // the SQLite statement caches are warm, as in a real drop.
  console.log("\n## runs");
  const warmUsers = take(WARMUP);
  const warmCoupon = await coupon("sim warm-up", 1_000_000);
  await run("warm-up: wins (not measured)", warmCoupon, warmUsers, maxC);
  await run("warm-up: already issued (not measured)", warmCoupon, warmUsers, maxC);

  // A coupon far from sold out: every first request wins, every repeat is refused by the object alone.
  const hot = await coupon("sim hot coupon", 1_000_000);
  for (const c of CONCURRENCY) {
    const winners = take(WINS);
    await run(`c=${c}: wins (201, DO + nested D1 write)`, hot, winners, c, `c${c}`);
    const repeat = Array.from({ length: REFUSALS }, (_, i) => winners[i % winners.length]);
    await run(`c=${c}: COUPON_ALREADY_ISSUED at the object (no nested I/O)`, hot, repeat, c, `c${c}`);
  }
  // Sold out: quantity 1. The object refuses; the isolate then remembers the sell-out for 1 s and answers
  // with 0 DO calls, so only a few of these reach the object (the rest are excluded, not samples).
  if (SOLDOUT > 0) {
    const soldCoupon = await coupon("sim sold-out probe", 1);
    const [first, ...rest] = take(SOLDOUT + 1);
    await run("sold-out probe: the one win (not measured)", soldCoupon, [first], 1);
    await run(`c=${CONCURRENCY[0]}: COUPON_SOLD_OUT (object or isolate memo)`, soldCoupon, rest, CONCURRENCY[0], `c${CONCURRENCY[0]}`);
  }

  // Cross-check with sub-millisecond resolution (the client's clock): a refusal at the object vs /health,
  // both one request at a time. The difference holds the route, validation, the RPC and the object's work.
  const health = await load({
    url: server.url,
    path: "/health",
    connections: CONCURRENCY[0],
    amount: REFUSALS,
    maxSeconds: 60,
    label: `c=${CONCURRENCY[0]}: GET /health (cross-check)`,
  });
  runs.push(health);
  console.log(
    `- ${health.label}: ${health.responses} responses (${Math.round(health.rps)} req/s), client p50 ${health.p50} ms p99 ${health.p99} ms`,
  );
  const refusalRun = runs.find((r) => r.label.startsWith(`c=${CONCURRENCY[0]}: COUPON_ALREADY_ISSUED`));
  const crossCheck = refusalRun
    ? {
        what: `client-side p50 latency, c=${CONCURRENCY[0]}: COUPON_ALREADY_ISSUED refusal minus GET /health (ms, autocannon's hrtime clock): an upper bound on the route + RPC + object time of a refusal`,
        refusalP50Ms: refusalRun.p50,
        healthP50Ms: health.p50,
        differenceMs: Math.round((refusalRun.p50 - health.p50) * 1000) / 1000,
      }
    : undefined;

  const loadEnd = uptime();
  const figures = Object.fromEntries(
    Object.entries(samples)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, summarise(v)]),
  );
  if (!figures[SIM_FIGURE] || figures[SIM_FIGURE].n < 100) throw new Error(`too few ${SIM_FIGURE} samples: ${figures[SIM_FIGURE]?.n ?? 0}`);

  console.log("\n## Durable Object `do` dur from Server-Timing (ms; the Worker's view of one RPC)\n");
  console.log("| figure | n | mean | p50 | p90 | p99 | p99.9 | max | answers |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const [k, f] of Object.entries(figures)) {
    const codes = Object.entries(f.byCode)
      .map(([c, n]) => `${c} x ${n}`)
      .join(", ");
    console.log(`| ${k} | ${f.n} | ${f.mean.toFixed(3)} | ${f.p50} | ${f.p90} | ${f.p99} | ${f.p999} | ${f.max} | ${codes} |`);
  }
  const allDurs = Object.values(samples)
    .flat()
    .map((x) => x.dur);
  const wholeMs = allDurs.every((d) => Number.isInteger(d));
  const resolution = wholeMs
    ? "every measured dur is a whole number of ms: the Workers clock (performance.now() in the Worker, around the RPC) advances in 1 ms ticks here, so each dur counts ticks. Quantiles are quantised to 1 ms; the mean over many samples is an unbiased estimate of the true mean (the call's start is at a uniform phase of the tick). Header values are written with toFixed(1)."
    : "Server-Timing dur is written with 0.1 ms resolution (toFixed(1)), measured with the Workers clock in the Worker around the RPC";
  console.log(`\nresolution: ${resolution}`);
  if (crossCheck)
    console.log(`cross-check: ${crossCheck.what}: ${crossCheck.refusalP50Ms} - ${crossCheck.healthP50Ms} = ${crossCheck.differenceMs} ms`);
  console.log(
    `\nexcluded: ${excluded.noDoCall} responses with no DO call (the isolate's sold-out memo), ${excluded.noHeader} without Server-Timing, other: ${JSON.stringify(excluded.other)}`,
  );
  const sim = figures[SIM_FIGURE];
  console.log(
    `\nThe sim uses \`${SIM_FIGURE}\` (mean ${sim.mean} ms, p50 ${sim.p50}, p99 ${sim.p99}) as the object's busy time per request:`,
  );
  console.log("an object is busy only for its own CPU and storage work; during a win's awaited D1 write its input gate is");
  console.log("open and it serves other requests (wins also share one group-commit batch), so the win's `do` dur");
  console.log("(which includes that D1 round trip) overstates how long it holds the object. The no-nested-I/O time is");
  console.log("itself an overestimate of the object's own work: it also holds the RPC and the Worker's CPU since its last I/O.");
  console.log(`uptime at end: ${loadEnd}`);

  const m = machine();
  const record = {
    what: "Durable Object (CouponIssuer) service time per request: the `do` metric of the Server-Timing response header of POST /api/v1/coupons/issue, measured at low concurrency on the local bench server",
    command: inv.command,
    wrapper: inv.wrapper,
    script: "scripts/sim/measure-do-service.mjs",
    date: started.toISOString(),
    gitCommit: gitCommit(),
    server: server.mode,
    machine: {
      cpu: m.cpu,
      cores: m.cores,
      memoryGiB: m.memoryGiB,
      os: m.os,
      node: m.node,
      workerd: m.workerd,
      miniflare: m.miniflare,
      wrangler: m.wrangler,
    },
    uptimeAtStart: loadStart,
    uptimeAtEnd: loadEnd,
    options: { refusals: REFUSALS, wins: WINS, soldout: SOLDOUT, warmup: WARMUP, concurrency: CONCURRENCY },
    resolution,
    crossCheck,
    simFigure: SIM_FIGURE,
    why: "The object is busy only for its own CPU/storage time; during a win's awaited D1 write the input gate is open and the object serves other requests (wins are group-committed), so the busy time per request is best approximated by the DO time of calls that made no nested I/O. That figure also includes the RPC itself and Worker CPU since the last I/O, so it overstates a refusal's busy time; a win does two more SQLite statements than a refusal.",
    excluded,
    runs: runs.map((r) => ({
      label: r.label,
      connections: r.connections,
      responses: r.responses,
      rps: Math.round(r.rps),
      clientP50Ms: r.p50,
      clientP99Ms: r.p99,
      statusCounts: r.statusCounts,
      errorCodes: r.errorCodes,
    })),
    figures,
  };
  writeFileSync(OUT, `${JSON.stringify(record, null, 2)}\n`);
  console.log(`\nwrote ${relative(process.cwd(), OUT) || OUT}`);
  exitCode = 0;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
