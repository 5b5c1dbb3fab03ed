/**
 * One bounded autocannon run with exact per-request status (and error-code) counts,
 * latency percentiles from every response and the `Server-Timing` aggregate; and the
 * same-run `/health` ceiling every ratio is measured against.
 *
 * Every load run is bounded twice: by `amount` (requests) or `duration` (seconds), and by a
 * hard wall-clock `maxSeconds` after which the run is stopped. Only the allowed targets
 * (loopback, or the `--url` origin; lib/http.mjs) are accepted.
 */
import autocannon from "autocannon";
import { assertTarget } from "./http.mjs";
import { TimingCollector } from "./server-timing.mjs";

/** @typedef {import("autocannon").RawHeaders} RawHeaders */
/** @typedef {Record<string, any>} RequestContext per-request scratch that autocannon carries from `build` to `onResponse` */
/**
 * @typedef {object} RequestOverride
 * @property {string} [path]
 * @property {unknown} [body]  objects are JSON-encoded
 * @property {string} [method]
 * @property {Record<string, string>} [headers] added to the run's headers for this request only
 */
/**
 * @typedef {object} LoadOptions
 * @property {string} url        base URL
 * @property {string} [path]     request path (or set per request in `build`)
 * @property {string} [method]   default GET
 * @property {Record<string, string>} [headers]
 * @property {unknown} [body]    fixed body (objects are JSON-encoded)
 * @property {(i: number, context: RequestContext) => RequestOverride | undefined | void} [build]
 *   per-request builder, called exactly once per request with a global index 0..amount-1;
 *   whatever it stores in `context` comes back to `onResponse` for that request
 * @property {(status: number, json: any, context: RequestContext, headers: RawHeaders) => void} [onResponse]
 *   called for every response with the parsed JSON body (when `parseBodies` or status >= 400)
 *   and the response headers (autocannon >= 7.x: raw header names as keys)
 * @property {boolean} [parseBodies] parse 2xx bodies too (needed to collect ids)
 * @property {number} [connections] default 100, at most `amount`
 * @property {number} [amount]   total requests (takes precedence over duration; 0 sends nothing)
 * @property {number} [duration] seconds, when no amount
 * @property {number} [maxSeconds] hard stop, default 90
 * @property {number} [timeout]  per-request timeout in seconds, default 10
 * @property {string} [label]
 */
/**
 * The run: label, counts, latency percentiles, and from every response's `Server-Timing`
 * header: `hops` (or null when no response carried the header) and `timing`.
 * @typedef {object} LoadRun
 * @property {string} label
 * @property {number} connections
 * @property {number} responses
 * @property {number} elapsedS  start to last response
 * @property {number} wallS     start to the end of the run
 * @property {number} rps
 * @property {number} p50
 * @property {number} p95
 * @property {number} p99
 * @property {number} max
 * @property {Record<string, number>} statusCounts  status -> responses
 * @property {Record<string, number>} errorCodes    "<status> <envelope error>" -> responses
 * @property {number} socketErrors
 * @property {number} timeouts
 * @property {number} parseFailures
 * @property {number} built
 * @property {import("./server-timing.mjs").HopsSummary | null} hops
 * @property {import("./server-timing.mjs").TimingSummary} timing
 */

/**
 * @param {number[]} sorted
 * @param {number} p
 */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] ?? NaN;
}

/** @param {unknown} b */
const encode = (b) => (b === undefined ? undefined : typeof b === "string" ? b : JSON.stringify(b));

/**
 * One bounded autocannon run.
 * @param {LoadOptions} o
 * @returns {Promise<LoadRun>}
 */
export async function load(o) {
  const url = new URL(o.path ?? "/", o.url).toString();
  assertTarget(url);
  const amount = o.amount ?? 0;
  // autocannon refuses more connections than requests ("connections cannot be greater than amount").
  const connections = amount > 0 ? Math.min(o.connections ?? 100, amount) : (o.connections ?? 100);
  const duration = o.duration ?? 10;
  const maxSeconds = o.maxSeconds ?? 90;
  /** @type {Record<string, string>} */
  const headers = { ...(o.body || o.build ? { "content-type": "application/json" } : {}), ...(o.headers ?? {}) };

  /** @type {Record<string, number>} */
  const statusCounts = {};
  /** @type {Record<string, number>} */
  const errorCodes = {};
  /** @type {number[]} */
  const latencies = [];
  let built = 0;
  let parseFailures = 0;
  const timing = new TimingCollector();

  /** @type {import("autocannon").Request} */
  const request = { method: o.method ?? "GET", path: new URL(url).pathname + new URL(url).search, headers };
  if (o.body !== undefined) request.body = encode(o.body);
  const build = o.build;
  if (build) {
    request.setupRequest = (req, context) => {
      const spec = build(built++, context) ?? {};
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

  // An explicit amount of 0 is nothing to send (autocannon would take it as "no amount" and run for `duration`).
  if (o.amount === 0) return emptyRun(o.label ?? `${request.method} ${request.path}`, connections, timing);

  /** @type {import("autocannon").Options} */
  const opts = { url, connections, timeout: o.timeout ?? 10, requests: [request] };
  if (amount) opts.amount = amount;
  else opts.duration = duration;
  const started = process.hrtime.bigint();
  let lastResponse = started;
  /** @type {import("autocannon").Result} */
  const result = await new Promise((resolve, reject) => {
    const instance = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
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

/**
 * The run of zero requests.
 * @param {string} label
 * @param {number} connections
 * @param {TimingCollector} timing
 * @returns {LoadRun}
 */
function emptyRun(label, connections, timing) {
  const { hops, timing: t } = timing.result();
  const none = { elapsedS: 0, wallS: 0, rps: NaN, p50: NaN, p95: NaN, p99: NaN, max: NaN };
  return {
    label,
    connections,
    responses: 0,
    ...none,
    statusCounts: {},
    errorCodes: {},
    socketErrors: 0,
    timeouts: 0,
    parseFailures: 0,
    built: 0,
    hops,
    timing: t,
  };
}

/**
 * The same load shape against `/health`: the ceiling of this server on this machine, this run.
 * @param {string} url
 * @param {{ connections?: number, amount?: number, duration?: number, label?: string }} [o]
 */
export async function healthCeiling(url, { connections, amount, duration, label } = {}) {
  return load({ url, path: "/health", connections, amount, duration, label: label ?? "GET /health (ceiling)" });
}
