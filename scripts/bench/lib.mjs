/**
 * Shared benchmark helpers: bounded autocannon runs with exact per-request status
 * (and error-code) counts, latency percentiles from every response, markdown tables,
 * the same-run `/health` ceiling, the machine description, and small API helpers.
 *
 * Every load run is bounded twice: by `amount` (requests) or `duration` (seconds),
 * and by a hard wall-clock `maxSeconds` after which the run is stopped.
 * Only loopback URLs are accepted.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { ADMIN_TOKEN, ROOT } from "./server.mjs";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export function assertLoopback(url) {
  const { hostname } = new URL(url);
  if (!LOOPBACK_HOSTS.has(hostname)) throw new Error(`refusing to load a non-loopback target: ${url}`);
}

// ---------------------------------------------------------------- arguments

/** `--name value` / `--name=value` from argv, as a number when numeric. */
export function arg(name, fallback) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === `--${name}`) return coerce(argv[i + 1], fallback);
    if (a.startsWith(`--${name}=`)) return coerce(a.slice(name.length + 3), fallback);
  }
  return fallback;
}
function coerce(v, fallback) {
  if (v === undefined) return fallback;
  return typeof fallback === "number" ? Number(v) : v;
}

// ---------------------------------------------------------------- machine

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
}

export function machine() {
  const cpus = os.cpus();
  let workerd = "?";
  try {
    workerd = execFileSync(join(ROOT, "node_modules/workerd/bin/workerd"), ["--version"], { encoding: "utf8" }).trim();
  } catch {
    /* keep "?" */
  }
  return {
    cpu: cpus[0]?.model ?? "?",
    cores: cpus.length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    workerd: `${workerd} (npm workerd ${pkgVersion("workerd")})`,
    miniflare: pkgVersion("miniflare"),
    wrangler: pkgVersion("wrangler"),
    autocannon: pkgVersion("autocannon"),
  };
}

export const loadavg = () => os.loadavg().map((l) => l.toFixed(2)).join(" / ");

export function printMachine(extra = {}) {
  const m = { ...machine(), ...extra };
  console.log("\n## Machine\n");
  console.log(`- CPU: ${m.cpu} x ${m.cores} logical cores; memory ${m.memoryGiB} GiB; ${m.os}`);
  console.log(`- Node ${m.node} (load generator, same machine), autocannon ${m.autocannon}`);
  console.log(`- ${m.workerd}; miniflare ${m.miniflare}; wrangler ${m.wrangler}`);
  for (const [k, v] of Object.entries(extra)) console.log(`- ${k}: ${v}`);
  console.log(`- date: ${new Date().toISOString()}; load average at start (1/5/15 min): ${loadavg()}`);
  return m;
}

// ---------------------------------------------------------------- load

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

// ---------------------------------------------------------------- Server-Timing

/** The metrics the app reports (docs/ARCHITECTURE.md §8: `Server-Timing` on every /api response). */
export const TIMING_METRICS = ["d1", "do", "redis"];

/**
 * Parses one `Server-Timing` value, e.g.
 * `d1;desc="2 calls";dur=3.1, do;desc="1 call";dur=0.8, hops;desc="3 sequential"`,
 * into `{ d1: {count: 2, nested: 0, dur: 3.1}, do: {...}, hops: {count: 3, nested: 0, dur: undefined} }`:
 * `count` is the leading integer of `desc`, `nested` the N of a `(+N nested)` in it (round
 * trips a callee made before answering, e.g. a Durable Object writing D1), `dur` the
 * metric's `dur` (ms, total over its calls). Commas and semicolons inside quotes are respected.
 */
export function parseServerTiming(value) {
  const out = {};
  for (const entry of splitOutsideQuotes(value, ",")) {
    const [name, ...params] = splitOutsideQuotes(entry, ";").map((p) => p.trim());
    if (!name) continue;
    const m = { count: undefined, nested: 0, dur: undefined };
    for (const p of params) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      let v = p.slice(eq + 1).trim();
      if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
      if (key === "dur") m.dur = Number(v);
      else if (key === "desc") {
        const n = /^\s*(\d+(?:\.\d+)?)/.exec(v);
        if (n) m.count = Number(n[1]);
        const nested = /\(\+(\d+) nested\)/.exec(v);
        if (nested) m.nested = Number(nested[1]);
      }
    }
    out[name.toLowerCase()] = m;
  }
  return out;
}

function splitOutsideQuotes(s, sep) {
  const parts = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (quoted && ch === "\\") {
      cur += ch + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (ch === '"') quoted = !quoted;
    if (ch === sep && !quoted) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

/**
 * The D1 meter of one `Server-Timing` value:
 * `d1;desc="2 calls (+1 nested), 14 rows read, 3 written, 1 write tx";dur=3.1` ->
 * `{ calls: 2, nested: 1, rowsRead: 14, rowsWritten: 3, writeTx: 1, dur: 3.1 }`. Rows count
 * the request's own calls only: `nested` D1 calls (a Durable Object writing D1 before it
 * answered) are counted, their rows are not reported. A value without a `d1` entry is a
 * request that made no D1 call (the app leaves zero metrics out), and `0 calls (+N nested)`
 * one that made none itself: zero rows. A `desc` of own calls that names no row count at all
 * (a build from before the row meter) gives undefined `rowsRead`/`rowsWritten`/`writeTx`;
 * once it names one, the others it leaves out are 0. Undefined for a missing header.
 * @param {string | null | undefined} value
 * @returns {{ calls: number, nested: number, rowsRead?: number, rowsWritten?: number, writeTx?: number, dur: number } | undefined}
 */
export function parseD1Meter(value) {
  if (value === null || value === undefined) return undefined;
  for (const entry of splitOutsideQuotes(value, ",")) {
    const [name, ...params] = splitOutsideQuotes(entry, ";").map((p) => p.trim());
    if (name?.toLowerCase() !== "d1") continue;
    let desc = "";
    let dur = 0;
    for (const p of params) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      const v = p.slice(eq + 1).trim();
      if (key === "desc") desc = v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, "$1") : v;
      else if (key === "dur") dur = Number(v);
    }
    const count = (re) => {
      const m = re.exec(desc);
      return m ? Number(m[1]) : undefined;
    };
    const calls = count(/^\s*(\d+)\s+calls?\b/) ?? 1;
    const nested = count(/\(\+(\d+) nested\)/) ?? 0;
    const rowsRead = count(/(\d+)\s+rows?\s+read\b/);
    const rowsWritten = count(/(\d+)\s+(?:rows?\s+)?written\b/);
    const writeTx = count(/(\d+)\s+write\s+tx\b/);
    const metered = calls === 0 || rowsRead !== undefined || rowsWritten !== undefined || writeTx !== undefined;
    return metered
      ? { calls, nested, rowsRead: rowsRead ?? 0, rowsWritten: rowsWritten ?? 0, writeTx: writeTx ?? 0, dur }
      : { calls, nested, rowsRead: undefined, rowsWritten: undefined, writeTx: undefined, dur };
  }
  return { calls: 0, nested: 0, rowsRead: 0, rowsWritten: 0, writeTx: 0, dur: 0 };
}

/**
 * A header from autocannon's `onResponse` headers (raw names as keys: matched in any case;
 * repeated headers joined with ", "), or undefined.
 */
export function headerValue(headers, name) {
  if (!headers) return undefined;
  const want = name.toLowerCase();
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() !== want) continue;
    const v = headers[k];
    return Array.isArray(v) ? v.join(", ") : String(v);
  }
  return undefined;
}

/**
 * Per-run aggregate of the responses' `Server-Timing`: a histogram of `hops` (overall and
 * per status), and per metric the calls and the time they took. A metric absent from a
 * header that is present counts as zero (the app omits zero metrics).
 */
class TimingCollector {
  constructor() {
    this.responses = 0;
    this.withHeader = 0;
    this.unparsable = 0;
    this.hops = new Map(); // hops -> count
    this.hopsByStatus = new Map(); // status -> Map(hops -> count)
    this.metrics = Object.fromEntries(TIMING_METRICS.map((k) => [k, { calls: 0, nested: 0, dur: 0, durSamples: 0 }]));
    this.writeTx = 0; // D1 write transactions the responses' meters counted (a shared batch once, by its sender)
    this.groups = new Map(); // kind -> { riders, batches, sumSizes, max }: shared D1 batches (src/shared/group-commit.ts)
  }
  add(status, headers) {
    this.responses++;
    const value = headerValue(headers, "server-timing");
    if (value === undefined) return;
    let t;
    try {
      t = parseServerTiming(value);
    } catch {
      this.unparsable++;
      return;
    }
    this.withHeader++;
    this.writeTx += parseD1Meter(value)?.writeTx ?? 0;
    // One `d1group` entry per shared batch the request rode in; `sent` on the one request that sent it.
    for (const g of value.matchAll(/(?:^|,\s*)d1group;desc="([^,"]+), (\d+) requests?(, sent)?"/g)) {
      let agg = this.groups.get(g[1]);
      if (!agg) this.groups.set(g[1], (agg = { riders: 0, batches: 0, sumSizes: 0, max: 0 }));
      const size = Number(g[2]);
      agg.riders++;
      agg.max = Math.max(agg.max, size);
      if (g[3]) {
        agg.batches++;
        agg.sumSizes += size;
      }
    }
    const hops = t.hops?.count ?? 0;
    this.hops.set(hops, (this.hops.get(hops) ?? 0) + 1);
    let byStatus = this.hopsByStatus.get(status);
    if (!byStatus) this.hopsByStatus.set(status, (byStatus = new Map()));
    byStatus.set(hops, (byStatus.get(hops) ?? 0) + 1);
    for (const k of TIMING_METRICS) {
      const m = t[k];
      if (!m) continue;
      const agg = this.metrics[k];
      // A metric listed without a count in `desc` is one call.
      agg.calls += m.count ?? 1;
      agg.nested += m.nested;
      if (Number.isFinite(m.dur)) {
        agg.dur += m.dur;
        agg.durSamples += m.count ?? 1;
      }
    }
  }
  /** `{hops, timing}` for the run result; `hops` is null when no response had the header. */
  result() {
    const n = this.withHeader;
    const hist = (map) => Object.fromEntries([...map].sort(([a], [b]) => a - b));
    let hops = null;
    if (n > 0) {
      let sum = 0;
      let max = 0;
      for (const [h, c] of this.hops) {
        sum += h * c;
        max = Math.max(max, h);
      }
      hops = {
        histogram: hist(this.hops),
        byStatus: Object.fromEntries([...this.hopsByStatus].sort(([a], [b]) => a - b).map(([s, m]) => [s, hist(m)])),
        mean: sum / n,
        max,
        responses: n,
      };
    }
    const metrics = {};
    for (const k of TIMING_METRICS) {
      const a = this.metrics[k];
      metrics[k] = {
        totalCalls: a.calls,
        totalNested: a.nested,
        totalDurMs: a.dur,
        callsPerResponse: n > 0 ? a.calls / n : NaN,
        nestedPerResponse: n > 0 ? a.nested / n : NaN,
        msPerCall: a.durSamples > 0 ? a.dur / a.durSamples : NaN,
      };
    }
    const groups = Object.fromEntries(
      [...this.groups].sort(([a], [b]) => a.localeCompare(b)).map(([kind, g]) => [kind, { ...g, mean: g.batches > 0 ? g.sumSizes / g.batches : NaN }]),
    );
    const d1Writes = { writeTx: this.writeTx, perResponse: n > 0 ? this.writeTx / n : NaN, groups };
    return { hops, timing: { responses: this.responses, withHeader: n, unparsable: this.unparsable, metrics, d1Writes } };
  }
}

/**
 * One bounded autocannon run.
 *
 * @param {object} o
 * @param {string} o.url        base URL (loopback only)
 * @param {string} o.path       request path (or set per request in `build`)
 * @param {string} [o.method]   default GET
 * @param {object} [o.headers]
 * @param {string|object} [o.body]  fixed body (objects are JSON-encoded)
 * @param {(i:number, context:object) => ({path?:string, body?:object|string, method?:string, headers?:object}|undefined)} [o.build]
 *        per-request builder, called exactly once per request with a global index 0..amount-1
 *        (`headers` are added to the run's headers for that request only);
 *        whatever it stores in `context` comes back to `onResponse` for that request
 * @param {(status:number, json:object|undefined, context:object, headers:object) => void} [o.onResponse]
 *        called for every response with the parsed JSON body (when `parseBodies` or status >= 400)
 *        and the response headers (autocannon >= 7.x: raw header names as keys)
 * @param {boolean} [o.parseBodies] parse 2xx bodies too (needed to collect ids)
 * @param {number} [o.connections] default 100
 * @param {number} [o.amount]   total requests (takes precedence over duration)
 * @param {number} [o.duration] seconds, when no amount
 * @param {number} [o.maxSeconds] hard stop, default 90
 * @param {number} [o.timeout]  per-request timeout in seconds, default 10
 * @returns the run: label, counts, latency percentiles, and from every response's
 *   `Server-Timing` header: `hops` ({histogram, byStatus, mean, max, responses}, or null
 *   when no response carried the header) and `timing` ({responses, withHeader, unparsable,
 *   metrics: {d1|do|redis: {totalCalls, totalNested, totalDurMs, callsPerResponse,
 *   nestedPerResponse, msPerCall}}})
 */
export async function load(o) {
  const url = new URL(o.path ?? "/", o.url).toString();
  assertLoopback(url);
  const connections = o.connections ?? 100;
  const amount = o.amount ?? 0;
  const duration = o.duration ?? 10;
  const maxSeconds = o.maxSeconds ?? 90;
  const headers = { ...(o.body || o.build ? { "content-type": "application/json" } : {}), ...(o.headers ?? {}) };
  const encode = (b) => (b === undefined ? undefined : typeof b === "string" ? b : JSON.stringify(b));

  const statusCounts = {};
  const errorCodes = {};
  const latencies = [];
  let built = 0;
  let parseFailures = 0;
  const timing = new TimingCollector();

  const request = { method: o.method ?? "GET", path: new URL(url).pathname + new URL(url).search, headers };
  if (o.body !== undefined) request.body = encode(o.body);
  if (o.build) {
    request.setupRequest = (req, context) => {
      const spec = o.build(built++, context) ?? {};
      return {
        ...req,
        method: spec.method ?? req.method,
        path: spec.path ?? req.path,
        headers: spec.headers ? { ...req.headers, ...spec.headers } : req.headers,
        body: spec.body !== undefined ? encode(spec.body) : req.body,
      };
    };
  }
  request.onResponse = (status, body, context, resHeaders) => {
    timing.add(status, resHeaders);
    let json;
    if (status >= 400 || o.parseBodies) {
      try {
        json = body ? JSON.parse(body) : undefined;
      } catch {
        parseFailures++;
      }
    }
    if (status >= 400) {
      const code = json?.error ?? "(no error code)";
      const key = `${status} ${code}`;
      errorCodes[key] = (errorCodes[key] ?? 0) + 1;
    }
    o.onResponse?.(status, json, context, resHeaders);
  };

  const opts = { url, connections, timeout: o.timeout ?? 10, requests: [request] };
  if (amount) opts.amount = amount;
  else opts.duration = duration;
  const started = process.hrtime.bigint();
  let lastResponse = started;
  let instance;
  const result = await new Promise((resolve, reject) => {
    instance = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
      latencies.push(responseTime);
      lastResponse = process.hrtime.bigint();
    });
    const hardStop = setTimeout(() => {
      console.error(`[bench] ${o.label ?? url}: hard stop after ${maxSeconds} s`);
      instance.stop();
    }, maxSeconds * 1000);
    instance.on("done", () => clearTimeout(hardStop));
  });
  // autocannon ends an `amount` run only on its next 1 s sample tick, so its wall time is
  // rounded up to a whole second (a 4.1 s /health ceiling took 5.1 s). The run's time is
  // start to last response; `wallS` keeps the wall time.
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const elapsedS = latencies.length > 0 ? Number(lastResponse - started) / 1e9 : wallS;

  latencies.sort((a, b) => a - b);
  const responses = latencies.length;
  const { hops, timing: timingSummary } = timing.result();
  return {
    label: o.label ?? `${request.method} ${request.path}`,
    connections,
    responses,
    elapsedS,
    wallS,
    rps: responses / elapsedS,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN,
    statusCounts,
    errorCodes,
    socketErrors: result.errors,
    timeouts: result.timeouts,
    parseFailures,
    built,
    hops,
    timing: timingSummary,
  };
}

// ---------------------------------------------------------------- tables

/** Fixed decimals ("-" when not a finite number). */
export const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");
/** Integer with thousands separators ("-" when not a finite number). */
export const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");

export function statusSummary(r) {
  const parts = Object.entries(r.statusCounts)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([s, c]) => `${s}: ${fmtInt(c)}`);
  if (r.socketErrors) parts.push(`socket errors: ${r.socketErrors}`);
  if (r.timeouts) parts.push(`timeouts: ${r.timeouts}`);
  return parts.join(", ") || "none";
}

/** Prints runs as a markdown table (pasteable into docs/PERFORMANCE.md). */
export function printTable(title, rows) {
  console.log(`\n### ${title}\n`);
  console.log("| run | conns | responses | time s | req/s | p50 ms | p95 ms | p99 ms | max ms | status counts |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${r.connections} | ${fmtInt(r.responses)} | ${fmt(r.elapsedS)} | ${fmtInt(r.rps)} | ${fmt(r.p50, 0)} | ${fmt(r.p95, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.max, 0)} | ${statusSummary(r)} |`,
    );
  }
  const codes = rows.filter((r) => Object.keys(r.errorCodes).length > 0);
  if (codes.length > 0) {
    console.log("\nError codes (status + envelope `error`):");
    for (const r of codes) {
      const list = Object.entries(r.errorCodes)
        .map(([k, v]) => `${k} x ${fmtInt(v)}`)
        .join(", ");
      console.log(`- ${r.label}: ${list}`);
    }
  }
  printHops(rows);
}

const fmtHist = (h) =>
  Object.entries(h)
    .map(([hops, c]) => `${hops} x ${fmtInt(c)}`)
    .join(", ");

/**
 * The runs' `Server-Timing` aggregate as a markdown table (printTable calls it under every
 * table): how many responses carried the header, the `hops` histogram (per status when the
 * run had several), mean hops, and per metric the mean calls per response (with the mean
 * nested round trips callees reported, when any) and mean ms per call. "n/a" when a run's
 * responses had no header (a build from before the header).
 */
export function printHops(rows) {
  const withTiming = rows.filter((r) => r.timing);
  if (withTiming.length === 0) return;
  if (withTiming.every((r) => !r.hops)) {
    console.log("\nServer-Timing: n/a (no response in these runs carried the header)");
    return;
  }
  console.log("\nServer-Timing (every response; hops = sequential D1+DO round trips, a parallel fan-out counts once):\n");
  console.log(`| run | with header | hops: responses | mean hops | ${TIMING_METRICS.map((k) => `${k} calls/resp | ${k} ms/call`).join(" | ")} |`);
  console.log(`|---|---:|---|---:|${TIMING_METRICS.map(() => "---:|---:").join("|")}|`);
  for (const r of withTiming) {
    const t = r.timing;
    const seen = `${fmtInt(t.withHeader)}/${fmtInt(t.responses)}${t.unparsable ? ` (${t.unparsable} unparsable)` : ""}`;
    if (!r.hops) {
      console.log(`| ${r.label} | ${seen} | n/a | n/a | ${TIMING_METRICS.map(() => "n/a | n/a").join(" | ")} |`);
      continue;
    }
    const statuses = Object.entries(r.hops.byStatus);
    const perStatus = statuses.length > 1 ? ` (${statuses.map(([s, h]) => `${s}: ${fmtHist(h)}`).join("; ")})` : "";
    const cells = TIMING_METRICS.map((k) => {
      const m = t.metrics[k];
      const nested = m.totalNested > 0 ? ` (+${fmt(m.nestedPerResponse, 2)} nested)` : "";
      return `${fmt(m.callsPerResponse, 2)}${nested} | ${m.totalCalls > 0 ? fmt(m.msPerCall, 2) : "-"}`;
    });
    console.log(`| ${r.label} | ${seen} | ${fmtHist(r.hops.histogram)}${perStatus} | ${fmt(r.hops.mean, 2)} | ${cells.join(" | ")} |`);
  }
}

/** The same load shape against `/health`: the ceiling of this server on this machine, this run. */
export async function healthCeiling(url, { connections, amount, duration, label } = {}) {
  return load({ url, path: "/health", connections, amount, duration, label: label ?? "GET /health (ceiling)" });
}

/** Other processes on this (shared) machine skew every number: print the load next to them. */
export function printLoad(when = "end") {
  console.log(`\nload average at ${when} (1/5/15 min): ${loadavg()}`);
}

const slug = (s) =>
  String(s)
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, "-")
    .replace(/^-+|-+$/g, "");

/**
 * Prints `ours` as a share of the same-run ceiling. With `{ target }` (a fraction, e.g. 0.5
 * = half the ceiling) it also prints the target and MET/MISSED. Always ends with one
 * machine-readable line, `ratio <name>=<r> target=<t> MET|MISSED` (`target` and the verdict
 * only when a target is given; `name` defaults to a slug of the run's label), for
 * `grep '^ratio '`. A missed target is reported, not a failed check. Returns the ratio.
 */
export function printRatio(ours, health, { target, name } = {}) {
  const ratio = ours.rps / health.rps;
  console.log(`\n${ours.label}: ${fmtInt(ours.rps)} req/s = ${fmt(ratio * 100)}% of same-run "${health.label}" (${fmtInt(health.rps)} req/s)`);
  const id = name ?? slug(ours.label);
  const r = Number.isFinite(ratio) ? ratio.toFixed(3) : "nan";
  if (target === undefined) {
    console.log(`ratio ${id}=${r}`);
    return ratio;
  }
  const met = Number.isFinite(ratio) && ratio >= target;
  console.log(`target: ${fmt(target * 100)}% of the ceiling (ratio >= ${target}): ${met ? "MET" : "MISSED"}`);
  console.log(`ratio ${id}=${r} target=${target} ${met ? "MET" : "MISSED"}`);
  return ratio;
}

/**
 * What D1 did for a storm, from every response's meter (Server-Timing): the D1 write
 * transactions per request (a batch shared by several requests is counted once, by the
 * request that sent it) as `d1tx <name>=<tx per request>`, and per kind of shared batch
 * (group commit, src/shared/group-commit.ts) the batches sent and their sizes as
 * `d1group <kind> batches=<n> mean=<requests per batch> max=<largest> requests=<riders>`;
 * both machine-readable for `grep '^d1tx \|^d1group '`. Returns the write tx per request.
 */
export function printD1Writes(run, name) {
  const w = run.timing?.d1Writes;
  if (!w || !(run.timing.withHeader > 0)) {
    console.log(`d1tx ${name}=n/a (no Server-Timing)`);
    return NaN;
  }
  console.log(`\nD1 writes of "${run.label}": ${fmtInt(w.writeTx)} write transactions for ${fmtInt(run.timing.withHeader)} answers`);
  console.log(`d1tx ${name}=${w.perResponse.toFixed(3)}`);
  for (const [kind, g] of Object.entries(w.groups)) {
    console.log(`d1group ${kind} batches=${g.batches} mean=${fmt(g.mean, 2)} max=${g.max} requests=${g.riders}`);
  }
  return w.perResponse;
}

/** The server's group-commit counters per kind (`GET /api/v1/admin/d1-groups`), or undefined on a build without the route. */
export async function d1Groups(url) {
  const r = await api(url, "GET", "/api/v1/admin/d1-groups", undefined, { admin: true });
  return r.status === 200 ? r.json.data.kinds : undefined;
}

/**
 * D1 writes a storm caused after its answers (ctx.waitUntil work such as `orders.settle`,
 * which no response's Server-Timing can carry), from the server's group-commit counters
 * read before the storm and after it settled: `d1tx <name>.after=<write tx per answer>`
 * and `d1group <kind> batches=.. mean=.. requests=.. (after the answer)`.
 */
export function printD1After(name, before, after, answers, kinds = ["orders.settle"]) {
  if (!before || !after) {
    console.log(`d1tx ${name}.after=n/a (no /admin/d1-groups)`);
    return;
  }
  let batches = 0;
  for (const kind of kinds) {
    const b = after[kind]?.batches ?? 0;
    const r = after[kind]?.requests ?? 0;
    const db = b - (before[kind]?.batches ?? 0);
    const dr = r - (before[kind]?.requests ?? 0);
    batches += db;
    console.log(`d1group ${kind} batches=${db} mean=${fmt(db > 0 ? dr / db : NaN, 2)} requests=${dr} (after the answer)`);
  }
  console.log(`d1tx ${name}.after=${answers > 0 ? (batches / answers).toFixed(3) : "nan"}`);
}

// ---------------------------------------------------------------- API helpers

export function adminHeaders() {
  return { authorization: `Bearer ${ADMIN_TOKEN}` };
}

/** One JSON request; returns `{status, json}`. */
export async function api(base, method, path, body, { admin = false, timeoutMs = 10_000 } = {}) {
  const url = new URL(path, base).toString();
  assertLoopback(url);
  const res = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(admin ? adminHeaders() : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json };
}

/**
 * Whether a POST route exists in this build: an empty body gets 400 from a real route
 * and 404 NOT_FOUND (Hono's notFound) from a missing one. Spends nothing.
 */
export async function routeExists(base, path) {
  const { status, json } = await api(base, "POST", path, {});
  return !(status === 404 && json?.error === "NOT_FOUND");
}

/** Runs `fn` over `items` with at most `concurrency` in flight; results in order. */
export async function mapLimit(items, concurrency, fn) {
  const out = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}

/**
 * Creates `count` users through the admin API, with autocannon (bounded, many connections).
 * Returns the user ids in creation order of the responses.
 */
export async function createUsers(url, count, { initialBalance = 0, connections = 50, namePrefix = "bench-user" } = {}) {
  const ids = [];
  const r = await load({
    url,
    path: "/api/v1/admin/users",
    method: "POST",
    headers: adminHeaders(),
    connections,
    amount: count,
    maxSeconds: 120,
    parseBodies: true,
    build: (i) => ({ body: { name: `${namePrefix}-${i}`, ...(initialBalance ? { initialBalance } : {}) } }),
    onResponse: (status, json) => {
      if (status === 201) ids.push(json.data.userId);
    },
    label: `POST /admin/users (setup, ${count})`,
  });
  if (ids.length !== count) throw new Error(`created ${ids.length}/${count} users: ${statusSummary(r)} ${JSON.stringify(r.errorCodes)}`);
  return { ids, run: r };
}

/** ISO-8601 with an explicit offset (the admin API wants one), e.g. 2026-11-26T16:00:00.000+09:00. */
export function isoWithOffset(ms, offsetMinutes = 9 * 60) {
  const shifted = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, -1);
  const sign = offsetMinutes >= 0 ? "+" : "-";
  const abs = Math.abs(offsetMinutes);
  return `${shifted}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** Deterministic PRNG (mulberry32) so a run's request mix is reproducible from its seed. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Collects pass/fail lines for the exactness section; `ok()` is the overall verdict. */
export class Checks {
  constructor(title) {
    this.title = title;
    this.lines = [];
    this.failed = 0;
  }
  check(name, pass, detail = "") {
    if (!pass) this.failed++;
    this.lines.push(`- [${pass ? "x" : " "}] ${pass ? "PASS" : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
    return pass;
  }
  /** A performance target: printed MET/MISSED with the checks, never a failure of the script. */
  target(name, met, detail = "") {
    this.lines.push(`- [${met ? "x" : " "}] target ${met ? "MET" : "MISSED"} ${name}${detail ? `: ${detail}` : ""}`);
    return met;
  }
  print() {
    console.log(`\n### ${this.title}\n`);
    for (const l of this.lines) console.log(l);
    console.log(`\n${this.failed === 0 ? "ALL CHECKS PASSED" : `${this.failed} CHECK(S) FAILED`}`);
  }
  ok() {
    return this.failed === 0;
  }
}

/**
 * The storm latency targets, printed with the checks as MET/MISSED lines: the tail stays
 * within `p99Factor` x p50 (default 5) and no answer takes `maxMs` or more (default 5,000
 * ms). They are targets, not exactness checks: a miss is reported (and as a machine-readable
 * `latency <label> ... MET|MISSED` line) but does not fail the script. With `ceiling` (the
 * same run's /health), the ceiling's own p99/p50 is printed beside it: on this shared 2-core
 * box a burst of 300 new connections gives even /health a p99 of tens of times its p50.
 * Returns whether both were met.
 */
export function latencyChecks(checks, run, { p99Factor = 5, maxMs = 5000, ceiling } = {}) {
  const { p50, p99, max } = run;
  const tailMet = Number.isFinite(p50) && Number.isFinite(p99) && p99 <= p99Factor * p50;
  const ceilingNote = ceiling ? `; same-run ${ceiling.label}: p99 ${fmt(ceiling.p99, 0)} ms = ${fmt(ceiling.p99 / ceiling.p50, 1)} x its p50` : "";
  checks.target(
    `${run.label}: p99 <= ${p99Factor} x p50`,
    tailMet,
    `p99 ${fmt(p99, 0)} ms, p50 ${fmt(p50, 0)} ms (p99 = ${fmt(p99 / p50, 1)} x p50; limit ${fmt(p99Factor * p50, 0)} ms)${ceilingNote}`,
  );
  const maxMet = Number.isFinite(max) && max < maxMs;
  checks.target(`${run.label}: max < ${fmtInt(maxMs)} ms`, maxMet, `max ${fmt(max, 0)} ms`);
  console.log(`latency ${run.label.replace(/\s+/g, "_")} p50_ms=${fmt(p50, 0)} p99_ms=${fmt(p99, 0)} max_ms=${fmt(max, 0)} ${tailMet && maxMet ? "MET" : "MISSED"}`);
  return tailMet && maxMet;
}

/** Polls `read()` until two reads `interval` ms apart are equal (bounded by `tries`). */
export async function readStable(read, { interval = 500, tries = 20 } = {}) {
  let prev = JSON.stringify(await read());
  for (let i = 0; i < tries; i++) {
    await new Promise((r) => setTimeout(r, interval));
    const cur = await read();
    const s = JSON.stringify(cur);
    if (s === prev) return { value: cur, stable: true };
    prev = s;
  }
  return { value: JSON.parse(prev), stable: false };
}

/**
 * Seeds `count` users straight into D1 (one statement per table, rows generated by
 * SQLite), the same rows `POST /admin/users` writes: users, user_balances, and a CHARGE
 * history row when the initial balance is positive. Used when creating thousands of
 * users over HTTP would take longer than the benchmark itself. Returns the new ids.
 */
export async function seedUsersD1(d1, count, { initialBalance = 0, namePrefix = "bench-user" } = {}) {
  const at = Date.now();
  const before = (await d1.first("SELECT COALESCE(MAX(id), 0) AS m FROM users")).m;
  const db = d1.raw;
  await db.batch([
    db
      .prepare(
        `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO users (name, created_at) SELECT ?2 || '-' || n, ?3 FROM seq`,
      )
      .bind(count, namePrefix, at),
    db.prepare("INSERT INTO user_balances (user_id, balance, updated_at) SELECT id, ?1, ?2 FROM users WHERE id > ?3").bind(initialBalance, at, before),
    db
      .prepare(
        `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
         SELECT user_id, 'CHARGE', balance, balance, NULL, ?1 FROM user_balances WHERE user_id > ?2 AND balance > 0`,
      )
      .bind(at, before),
  ]);
  const rows = await d1.all("SELECT id FROM users WHERE id > ? ORDER BY id", before);
  if (rows.length !== count) throw new Error(`seeded ${rows.length}/${count} users`);
  return rows.map((r) => r.id);
}

/**
 * The `--shards K` mode of a storm script: the same storm on K = 1, then on K shards, on one
 * server, with the note that this machine cannot show more than one object's capacity.
 * `runStorm({ k })` returns `{ ok, skipped }` (plus whatever `printComparison` reads).
 * Returns the exit code: 0 all checks passed, 1 a check failed, 2 a storm was skipped.
 */
export async function compareShards(shards, what, { runStorm, printComparison, point }) {
  const note =
    `NOTE: this machine runs every Durable Object in one workerd process on ${os.cpus().length} cores, so K ${what} cannot show more than one object's worth of capacity here: ` +
    `K=${shards} vs K=1 req/s is not a capacity measurement. ${point}`;
  console.log(`\n${note}`);
  printLoad("start");
  const runs = [];
  for (const [i, k] of [1, shards].entries()) {
    console.log(`\n## Storm ${i + 1} of 2: K=${k}`);
    const r = await runStorm({ k });
    if (r.skipped) break;
    runs.push(r);
  }
  if (runs.length < 2) return 2;
  printComparison(runs, note);
  return runs.every((r) => r.ok) ? 0 : 1;
}
