#!/usr/bin/env node
/**
 * `npm run sim:hot-coupon`: a discrete-event capacity model of ONE hot coupon on the deployed
 * system (Workers in front, K CouponIssuer shard objects behind them).
 *
 * Why a model: the local bench server runs the Worker, every Durable Object and D1 on one
 * workerd process on this machine's two cores, so a local storm measures this machine, not a
 * single object's limit on Cloudflare. What a local run can measure is how long the object is
 * busy per request (`npm run sim:measure`, recorded in scripts/sim/do-service-time.json); this
 * script puts that service time into a queueing model of the deployed shape.
 *
 * The model (every ASSUMED input is a flag, and is printed with the results):
 *   - Arrivals: Poisson at the offered rate for --duration-s (default 10) after --warmup-s
 *     (default 1, simulated but not counted); each request is a distinct user whose home shard
 *     is chosen uniformly among K (a stable, uniform hash of the user id).
 *   - Workers scale out freely: no queueing in front; --worker-overhead-ms (default 0) is added
 *     to every answered request's latency, so by default latency is the object part only
 *     (queue wait + service + any wait for a borrowed batch).
 *   - Each shard object serves one request at a time, FIFO. Service times are i.i.d. draws from
 *     the MEASURED distribution (--service-model empirical: the measured values with their
 *     frequencies; lognormal: a lognormal fitted to them, see below), times --service-scale
 *     (default 1; the "service time needed" table scales it to find where each run breaks).
 *   - Overload: a request that has waited in its object's queue longer than --queue-bound-ms
 *     (default 1000) fails as overloaded ("Durable Object is overloaded. Requests queued for too
 *     long."); with --queue-cap N a request that finds N requests already waiting fails at once
 *     ("Too many requests queued"; default: no cap). Cloudflare publishes neither number.
 *   - Quantity: --quantity (default 200,000: no sell-out at 10,000 req/s in 11 s) split
 *     quantity/K per shard. A shard that runs dry borrows up to --borrow-batch (default 100)
 *     units from a sibling (ring order; the giver hands over min(batch, ceil(its remaining/2))):
 *     one extra service on the giver (queued FIFO like a request, never dropped), a one-way
 *     delay of --transfer-delay-ms (default 1) each way, and --receiver-work (default 1) service
 *     draws on the receiver. Requests served while the shard is dry wait (not holding the object:
 *     its input gate is open during the outgoing call) for the batch; when every sibling answers
 *     0 the shard is sold out and answers COUPON_SOLD_OUT. The Worker's sold-out memo is not
 *     modelled (conservative: after a sell-out every request still reaches an object).
 *   - Deterministic: one seeded PRNG stream each for arrivals, shard choice and service times
 *     (--seed, default 1), the same for every K, so runs are reproducible and comparable.
 *
 * Output: the inputs (MEASURED vs ASSUMED), a table of runs, the service time each run could
 * take before it errs, a few sensitivity runs, the sell-out tail (borrowing) and, LAST, one
 * machine-readable line per run of the main grid:
 *   hot-coupon K=<k> offered=<r>/s served=<s>/s p99_ms=<p> errors=<e>%
 * served = answered (a win or a business refusal) per second of the measured window; p99 over
 * the answered requests; errors = share of the window's requests that failed as overloaded.
 *
 * Options: --k 1,2,4,8,16 --rates 2590,10000 --duration-s 10 --warmup-s 1 --seed 1
 *   --queue-bound-ms 1000 --queue-cap 0 (0 = none) --worker-overhead-ms 0 --quantity 200000
 *   --borrow-batch 100 --transfer-delay-ms 1 --receiver-work 1
 *   --service-ms-file scripts/sim/do-service-time.json --figure <name in the file>
 *   --service-model empirical|lognormal --service-scale 1 --tail-quantity 100000 --quick
 *   (--quick: only the main table and the machine-readable lines)
 */
import { rng } from "../bench/lib/fixtures.mjs"; // mulberry32, the benches' seeded generator
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

// ---------------------------------------------------------------- arguments

/**
 * `--name value` / `--name=value`, a number when `fallback` is one (a non-number is an error).
 * @template {string | number | undefined} T
 * @param {string} name
 * @param {T} fallback
 * @returns {T extends number ? number : string}
 */
function arg(name, fallback) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    let v;
    if (a === `--${name}`) v = argv[i + 1];
    else if (a.startsWith(`--${name}=`)) v = a.slice(name.length + 3);
    else continue;
    if (v === undefined) break;
    if (typeof fallback === "number") {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`--${name} wants a number, got ${v}`);
      return /** @type {any} */ (n);
    }
    return /** @type {any} */ (v);
  }
  return /** @type {any} */ (fallback);
}
/** @param {unknown} s */
const list = (s) =>
  String(s)
    .split(",")
    .map(Number)
    .filter((n) => Number.isFinite(n) && n > 0);

const KS = list(arg("k", "1,2,4,8,16"));
const RATES = list(arg("rates", "2590,10000"));
const DURATION_S = arg("duration-s", 10);
const WARMUP_S = arg("warmup-s", 1);
const SEED = arg("seed", 1);
const QUEUE_BOUND_MS = arg("queue-bound-ms", 1000);
const QUEUE_CAP = arg("queue-cap", 0);
const OVERHEAD_MS = arg("worker-overhead-ms", 0);
const QUANTITY = arg("quantity", 200_000);
const BORROW_BATCH = arg("borrow-batch", 100);
const TRANSFER_DELAY_MS = arg("transfer-delay-ms", 1);
const RECEIVER_WORK = arg("receiver-work", 1);
const SERVICE_FILE = resolve(arg("service-ms-file", resolve(ROOT, "scripts/sim/do-service-time.json")));
const SERVICE_MODEL = arg("service-model", "empirical");
const SERVICE_SCALE = arg("service-scale", 1);
const TAIL_QUANTITY = arg("tail-quantity", 100_000);
const QUICK = process.argv.includes("--quick");
/** Cloudflare's documented soft limit per object (Durable Objects limits page); shown, not enforced. */
const SOFT_LIMIT_RPS = 1000;

if (!["empirical", "lognormal"].includes(SERVICE_MODEL)) throw new Error(`--service-model empirical|lognormal, got ${SERVICE_MODEL}`);

// ---------------------------------------------------------------- measured service time

const record = JSON.parse(readFileSync(SERVICE_FILE, "utf8"));
const FIGURE = arg("figure", String(record.simFigure));
const figure = record.figures?.[FIGURE];
if (!figure) throw new Error(`${SERVICE_FILE} has no figure ${FIGURE} (has: ${Object.keys(record.figures ?? {}).join(", ")})`);
/** @typedef {[number, number][]} Histogram [[value ms, count], ...] */
/** [[value ms, count], ...]: the measured values (whole-ms ticks here) and how often each was seen. */
/** @type {Histogram} */
const histogram = figure.histogram ?? histogramFromQuantiles(figure.quantiles);
/**
 * A file without a histogram: its quantile grid [[q, value], ...] read as masses q[i+1] - q[i] at value[i+1].
 * @param {[number, number][]} quantiles
 * @returns {Histogram}
 */
function histogramFromQuantiles(quantiles) {
  /** @type {Map<number, number>} */
  const masses = new Map();
  for (let i = 0; i + 1 < quantiles.length; i++) {
    const [q0] = quantiles[i] ?? [0, 0];
    const [q1, v] = quantiles[i + 1] ?? [0, 0];
    if (q1 > q0) masses.set(v, (masses.get(v) ?? 0) + (q1 - q0) * 1e6);
  }
  return [...masses].sort((a, b) => a[0] - b[0]);
}
const histN = histogram.reduce((a, [, c]) => a + c, 0);
const histMean = histogram.reduce((a, [v, c]) => a + v * c, 0) / histN;
const wholeMs = histogram.every(([v]) => Number.isInteger(v));

// ---------------------------------------------------------------- PRNG

/** Independent streams from one seed (arrivals, shard choice, service). */
/**
 * @param {number} seed
 * @param {number} n
 */
const stream = (seed, n) => rng(Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca77));

// ---------------------------------------------------------------- service-time models

/**
 * Empirical: draws one of the measured values with its measured frequency (inverse CDF of the histogram).
 * @param {Histogram} hist
 * @returns {(u: number) => number}
 */
function empiricalSampler(hist) {
  const values = hist.map(([v]) => v);
  /** @type {number[]} */
  const cum = [];
  let acc = 0;
  for (const [, c] of hist) {
    acc += c;
    cum.push(acc);
  }
  return (u) => {
    const x = u * acc;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cum[mid] ?? 0) > x) hi = mid;
      else lo = mid + 1;
    }
    return values[lo] ?? NaN;
  };
}

/** @param {number} x */
function erfc(x) {
  // Numerical Recipes erfcc: fractional error < 1.2e-7 everywhere.
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}
/** @param {number} x */
const Phi = (x) => 0.5 * erfc(-x / Math.SQRT2);

/**
 * Lognormal fitted by maximum likelihood to the measured histogram. With whole-ms ticks, a call
 * of true length D that starts at a uniform phase of the tick reads k ticks with probability
 * max(0, 1 - |D - k|) (a triangle around k), so P(read k) = E[max(0, 1 - |D - k|)], computed
 * in closed form from the lognormal's CDF and partial first moment. Without ticks (fractional
 * values) it is fitted to the median and p99 instead.
 * @param {Histogram} hist
 * @param {{ p50: number, p99: number }} measured
 * @returns {{ mu: number, sigma: number, how: string }}
 */
function fitLognormal(hist, { p50, p99 }) {
  if (!hist.every(([v]) => Number.isInteger(v))) {
    const mu = Math.log(Math.max(p50, 1e-3));
    const sigma = Math.max(0.01, (Math.log(Math.max(p99, p50 * 1.01)) - mu) / 2.3263);
    return { mu, sigma, how: "median and p99 of the measured values" };
  }
  /**
   * @param {number} mu
   * @param {number} sigma
   */
  const logLik = (mu, sigma) => {
    /** @param {number} x */
    const F = (x) => (x <= 0 ? 0 : Phi((Math.log(x) - mu) / sigma));
    const em = Math.exp(mu + (sigma * sigma) / 2);
    /** @param {number} x */
    const M1 = (x) => (x <= 0 ? 0 : em * Phi((Math.log(x) - mu - sigma * sigma) / sigma));
    let ll = 0;
    for (const [k, c] of hist) {
      let p = (k + 1) * (F(k + 1) - F(k)) - (M1(k + 1) - M1(k));
      if (k >= 1) p += M1(k) - M1(k - 1) - (k - 1) * (F(k) - F(k - 1));
      ll += c * Math.log(Math.max(p, 1e-300));
    }
    return ll;
  };
  let best = { ll: -Infinity, mu: 0, sigma: 1 };
  /**
   * @param {number} muLo
   * @param {number} muHi
   * @param {number} sLo
   * @param {number} sHi
   * @param {number} steps
   */
  const search = (muLo, muHi, sLo, sHi, steps) => {
    for (let i = 0; i <= steps; i++) {
      const mu = muLo + ((muHi - muLo) * i) / steps;
      for (let j = 0; j <= steps; j++) {
        const sigma = sLo + ((sHi - sLo) * j) / steps;
        const ll = logLik(mu, sigma);
        if (ll > best.ll) best = { ll, mu, sigma };
      }
    }
  };
  search(Math.log(0.005), Math.log(20), 0.05, 3, 120);
  for (let w = 0.2; w > 0.001; w /= 4) search(best.mu - w, best.mu + w, Math.max(0.01, best.sigma - w), best.sigma + w, 20);
  return { mu: best.mu, sigma: best.sigma, how: "maximum likelihood on the measured 1 ms ticks (uniform tick phase)" };
}

/**
 * @param {{ mu: number, sigma: number }} fit
 * @returns {(u1: number, u2: number) => number}
 */
function lognormalSampler({ mu, sigma }) {
  // Box-Muller on two uniforms from the service stream (u in [0,1): 1 - u is in (0,1]).
  return (u1, u2) => Math.exp(mu + sigma * Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2));
}

const lognormalFit = fitLognormal(histogram, figure);
const lognormalMean = Math.exp(lognormalFit.mu + (lognormalFit.sigma * lognormalFit.sigma) / 2);
/** @param {number} p */
const lognormalQ = (p) => Math.exp(lognormalFit.mu + lognormalFit.sigma * Math.SQRT2 * inverseErf(2 * p - 1));
/** @param {number} x */
function inverseErf(x) {
  // Giles' single-precision approximation, refined by two Newton steps on erf = 1 - erfc.
  let w = -Math.log((1 - x) * (1 + x));
  let p;
  if (w < 5) {
    w -= 2.5;
    p = 2.81022636e-8;
    for (const c of [3.43273939e-7, -3.5233877e-6, -4.39150654e-6, 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941])
      p = c + p * w;
  } else {
    w = Math.sqrt(w) - 3;
    p = -0.000200214257;
    for (const c of [0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682])
      p = c + p * w;
  }
  let y = p * x;
  for (let i = 0; i < 2; i++) y -= (1 - erfc(y) - x) / ((2 / Math.sqrt(Math.PI)) * Math.exp(-y * y));
  return y;
}

/**
 * A service-time draw function for one run: (serviceStream) => ms.
 * @param {string} model
 * @param {number} scale
 * @returns {(r: () => number) => number}
 */
function makeService(model, scale) {
  if (model === "lognormal") {
    const s = lognormalSampler(lognormalFit);
    return (r) => scale * s(r(), r());
  }
  const s = empiricalSampler(histogram);
  return (r) => scale * s(r());
}
/** @param {string} model */
const baseMean = (model) => (model === "lognormal" ? lognormalMean : histMean);

// ---------------------------------------------------------------- event queue

/** @typedef {{ arrival: number, counted: boolean }} Req one issuance request */
/**
 * One unit of work in a shard's FIFO: a request, a give (a sibling asked for units), or a receive (its answer).
 * @typedef {{ kind: "req", req: Req, enq?: number } | { kind: "give", receiver: Shard, req?: undefined, enq?: number } | { kind: "receive", amount: number, req?: undefined, enq?: number }} Job
 */
/**
 * One CouponIssuer shard of the model.
 * @typedef {object} Shard
 * @property {number} i
 * @property {(Job | undefined)[]} queue
 * @property {number} head
 * @property {boolean} busy
 * @property {number} remaining
 * @property {Req[]} parked
 * @property {boolean} borrowing
 * @property {number} tried
 * @property {boolean} soldOut
 * @property {number} busyMs
 * @property {number} served
 */
/** @typedef {{ type: 0 } | { type: 1, s: Shard, job: Job } | { type: 2, s: Shard, receiver: Shard } | { type: 3, s: Shard, amount: number }} SimEvent */

/** Binary min-heap of events ordered by time, then by insertion (FIFO among equal times). */
class EventQueue {
  constructor() {
    /** @type {number[]} */
    this.t = [];
    /** @type {number[]} */
    this.seq = [];
    /** @type {(SimEvent | undefined)[]} */
    this.ev = [];
    /** @type {SimEvent | undefined} the event `pop` removed */
    this.last = undefined;
    this.n = 0;
    this.counter = 0;
  }
  /**
   * @param {number} i
   * @param {number} j
   */
  less(i, j) {
    return this.t[i] < this.t[j] || (this.t[i] === this.t[j] && this.seq[i] < this.seq[j]);
  }
  /**
   * @param {number} i
   * @param {number} j
   */
  swap(i, j) {
    [this.t[i], this.t[j]] = [this.t[j], this.t[i]];
    [this.seq[i], this.seq[j]] = [this.seq[j], this.seq[i]];
    [this.ev[i], this.ev[j]] = [this.ev[j], this.ev[i]];
  }
  /**
   * @param {number} time
   * @param {SimEvent} ev
   */
  push(time, ev) {
    let i = this.n++;
    this.t[i] = time;
    this.seq[i] = this.counter++;
    this.ev[i] = ev;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  /** Removes the earliest event; returns its time (the event is in `this.last`). */
  pop() {
    const time = this.t[0] ?? NaN;
    this.last = this.ev[0];
    this.n--;
    if (this.n > 0) {
      this.t[0] = this.t[this.n];
      this.seq[0] = this.seq[this.n];
      this.ev[0] = this.ev[this.n];
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.n && this.less(l, m)) m = l;
        if (r < this.n && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    this.ev[this.n] = undefined;
    return time;
  }
}

// ---------------------------------------------------------------- the simulation

const ARRIVAL = /** @type {const} */ (0);
const DONE = /** @type {const} */ (1);
const AT_GIVER = /** @type {const} */ (2);
const AT_RECEIVER = /** @type {const} */ (3);

/**
 * One run. Time in ms. Returns counts over the requests that arrived in the measured window
 * [warm-up, warm-up + duration), whatever time they were answered (the run drains every event).
 * @param {{ k: number, rate: number, seed: number, model?: string, scale?: number, queueBoundMs?: number, queueCap?: number, quantity?: number,
 *   overheadMs?: number, warmupS?: number, durationS?: number, borrowBatch?: number, transferDelayMs?: number, receiverWork?: number }} o
 */
function simulate(o) {
  const { k: K, rate, seed } = o;
  const model = o.model ?? SERVICE_MODEL;
  const scale = o.scale ?? SERVICE_SCALE;
  const bound = o.queueBoundMs ?? QUEUE_BOUND_MS;
  const cap = o.queueCap ?? QUEUE_CAP;
  const quantity = o.quantity ?? QUANTITY;
  const overhead = o.overheadMs ?? OVERHEAD_MS;
  const warmEnd = (o.warmupS ?? WARMUP_S) * 1000;
  const end = warmEnd + (o.durationS ?? DURATION_S) * 1000;
  const batch = o.borrowBatch ?? BORROW_BATCH;
  const delay = o.transferDelayMs ?? TRANSFER_DELAY_MS;
  const receiverWork = o.receiverWork ?? RECEIVER_WORK;

  const rArrival = stream(seed, 0);
  const rShard = stream(seed, 1);
  const rService = stream(seed, 2);
  const draw = makeService(model, scale);
  const perMs = rate / 1000;

  /** @type {Shard[]} */
  const shards = Array.from({ length: K }, (_, i) => ({
    i,
    queue: [],
    head: 0,
    busy: false,
    remaining: Math.floor(quantity / K) + (i < quantity % K ? 1 : 0),
    parked: [],
    borrowing: false,
    tried: 0,
    soldOut: false,
    busyMs: 0,
    served: 0,
  }));
  const q = new EventQueue();
  /** @type {number[]} */
  const latencies = [];
  let offered = 0;
  let wins = 0;
  let soldOutAnswers = 0;
  let failedBound = 0;
  let failedCap = 0;
  let transfers = 0;
  let transferUnits = 0;
  let firstDryAt = NaN;
  let soldOutAt = NaN;
  let maxWait = 0;
  let maxQueue = 0;

  let winsAll = 0;
  /**
   * @param {Req} req
   * @param {number} now
   * @param {boolean} won
   */
  const answer = (req, now, won) => {
    if (won) winsAll++;
    if (!req.counted) return;
    latencies.push(now - req.arrival + overhead);
    if (won) wins++;
    else soldOutAnswers++;
  };
  /**
   * @param {Req} req
   * @param {"cap" | "bound"} why
   */
  const fail = (req, why) => {
    if (!req.counted) return;
    if (why === "cap") failedCap++;
    else failedBound++;
  };
  /** @param {Shard} s */
  const waiting = (s) => s.queue.length - s.head;
  /**
   * @param {Shard} s
   * @param {Job} job
   * @param {number} now
   */
  const enqueue = (s, job, now) => {
    if (job.req && cap > 0 && waiting(s) >= cap) return fail(job.req, "cap");
    job.enq = now;
    s.queue.push(job);
    if (waiting(s) > maxQueue) maxQueue = waiting(s);
    if (!s.busy) startNext(s, now);
  };
  /**
   * @param {Shard} s
   * @param {number} now
   */
  const startNext = (s, now) => {
    while (s.head < s.queue.length) {
      const job = s.queue[s.head];
      s.queue[s.head++] = undefined;
      if (!job) continue;
      if (s.head > 4096 && s.head * 2 > s.queue.length) {
        s.queue = s.queue.slice(s.head);
        s.head = 0;
      }
      const waited = now - (job.enq ?? now);
      // "Requests queued for too long": applied per request, when it would start (FIFO: the same
      // requests fail as if each were dropped the moment its wait passed the bound).
      if (job.req && waited > bound) {
        fail(job.req, "bound");
        continue;
      }
      if (job.req?.counted && waited > maxWait) maxWait = waited;
      const service = draw(rService) * (job.kind === "receive" ? receiverWork : 1);
      s.busy = true;
      s.busyMs += service;
      q.push(now + service, { type: DONE, s, job });
      return;
    }
    s.busy = false;
  };
  /**
   * @param {Shard} s
   * @param {number} now
   */
  const borrow = (s, now) => {
    if (s.tried >= K - 1) {
      // Every sibling answered 0 (or there is none): sold out for this shard.
      s.soldOut = true;
      if (Number.isNaN(soldOutAt) && shards.every((x) => x.soldOut || x.remaining === 0)) soldOutAt = now;
      for (const req of s.parked) answer(req, now, false);
      s.parked = [];
      return;
    }
    const giver = /** @type {Shard} */ (shards[(s.i + 1 + s.tried) % K]);
    s.borrowing = true;
    transfers++;
    q.push(now + delay, { type: AT_GIVER, s: giver, receiver: s });
  };
  /**
   * @param {Shard} s
   * @param {Job} job
   * @param {number} now
   */
  const done = (s, job, now) => {
    if (job.kind === "req") {
      s.served++;
      if (s.remaining > 0) {
        s.remaining--;
        answer(job.req, now, true);
      } else if (s.soldOut) {
        answer(job.req, now, false);
      } else {
        if (Number.isNaN(firstDryAt)) firstDryAt = now;
        s.parked.push(job.req);
        if (!s.borrowing) borrow(s, now);
      }
    } else if (job.kind === "give") {
      const amount = Math.min(batch, Math.ceil(s.remaining / 2));
      s.remaining -= amount;
      q.push(now + delay, { type: AT_RECEIVER, s: job.receiver, amount });
    } else {
      // "receive": the batch (or a 0) from the sibling asked.
      s.borrowing = false;
      if (job.amount > 0) {
        transferUnits += job.amount;
        s.remaining += job.amount;
        s.tried = 0;
        while (s.parked.length > 0 && s.remaining > 0) {
          s.remaining--;
          answer(/** @type {Req} */ (s.parked.shift()), now, true);
        }
        if (s.parked.length > 0) borrow(s, now);
      } else {
        s.tried++;
        borrow(s, now);
      }
    }
    startNext(s, now);
  };

  const nextGap = () => -Math.log(1 - rArrival()) / perMs;
  let tNext = nextGap();
  if (tNext < end) q.push(tNext, { type: ARRIVAL });
  while (q.n > 0) {
    const now = q.pop();
    const ev = q.last;
    if (!ev) throw new Error("model bug: an empty event");
    switch (ev.type) {
      case ARRIVAL: {
        const req = { arrival: now, counted: now >= warmEnd };
        if (req.counted) offered++;
        const s = /** @type {Shard} */ (shards[Math.min(K - 1, Math.floor(rShard() * K))]);
        enqueue(s, { kind: "req", req }, now);
        tNext = now + nextGap();
        if (tNext < end) q.push(tNext, { type: ARRIVAL });
        break;
      }
      case DONE:
        done(ev.s, ev.job, now);
        break;
      case AT_GIVER:
        enqueue(ev.s, { kind: "give", receiver: ev.receiver }, now);
        break;
      case AT_RECEIVER:
        enqueue(ev.s, { kind: "receive", amount: ev.amount }, now);
        break;
    }
  }

  // Invariant of the model (and of the system it models): never more wins than units.
  if (winsAll > quantity) throw new Error(`model bug: ${winsAll} wins for quantity ${quantity}`);
  const lat = Float64Array.from(latencies).sort();
  /** @param {number} p */
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.max(0, Math.ceil(p * lat.length) - 1))] : NaN);
  const failed = failedBound + failedCap;
  const durationS = (end - warmEnd) / 1000;
  const busiest = Math.max(...shards.map((s) => s.busyMs));
  return {
    K,
    rate,
    offered,
    answered: lat.length,
    servedPerS: lat.length / durationS,
    wins,
    winsAll,
    soldOutAnswers,
    failed,
    failedBound,
    failedCap,
    errorsPct: offered ? (100 * failed) / offered : 0,
    p50: pct(0.5),
    p99: pct(0.99),
    max: lat.length ? lat[lat.length - 1] : NaN,
    maxWait,
    maxQueue,
    transfers,
    transferUnits,
    firstDryAt,
    soldOutAt,
    busiestUtil: busiest / end,
    mean: baseMean(model) * scale,
  };
}

// ---------------------------------------------------------------- output

/** @typedef {ReturnType<typeof simulate>} SimResult */
/** @param {number} n */
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "-");
/** @param {number} n */
const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
/** @param {number} ms */
const secs = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "never");

const line = (s = "") => console.log(s);
/** @param {Histogram} hist */
const valuesOf = (hist) => {
  const total = hist.reduce((a, [, c]) => a + c, 0);
  const whole = hist.every(([, c]) => Number.isInteger(c));
  return hist.map(([v, c]) => (whole ? `${v} ms x ${c}` : `${v} ms ${fmt((100 * c) / total, 1)} %`)).join(", ");
};
const rec = record;

line("# Capacity model: one hot coupon (`npm run sim:hot-coupon`)");
line();
line(`Command: ${["npm run sim:hot-coupon", ...process.argv.slice(2)].join(" ")}`);
line(
  `Service-time file: ${relative(process.cwd(), SERVICE_FILE) || SERVICE_FILE}, figure \`${FIGURE}\`, model ${SERVICE_MODEL}${SERVICE_SCALE !== 1 ? `, SCALED x ${SERVICE_SCALE} (a what-if, not the measurement)` : ""}`,
);
line();
line("## Inputs");
line();
line("MEASURED (this project, local bench server):");
line(`- Object service time per request: the \`do\` part of the Server-Timing response header (\`do;desc="1 call";dur=<ms>\`)`);
line(
  `  of POST /api/v1/coupons/issue, figure \`${FIGURE}\`: n=${figure.n}, mean ${fmt(figure.mean, 3)} ms, p50 ${figure.p50}, p90 ${figure.p90}, p99 ${figure.p99}, p99.9 ${figure.p999}, max ${figure.max} ms`,
);
line(
  `  answers: ${Object.entries(figure.byCode ?? {})
    .map(([c, n]) => `${c} x ${n}`)
    .join(", ")}; measured values: ${valuesOf(histogram)}`,
);
line(`  command: ${rec.wrapper ?? rec.command}  (script ${rec.script}); date ${rec.date}; git ${rec.gitCommit}`);
line(
  `  machine: ${rec.machine?.cpu} x ${rec.machine?.cores} cores, ${rec.machine?.memoryGiB} GiB, ${rec.machine?.os}, node ${rec.machine?.node}, ${rec.machine?.workerd}`,
);
line(`  server: ${rec.server}`);
line(`  machine load: at start \`${rec.uptimeAtStart}\`; at end \`${rec.uptimeAtEnd}\``);
if (wholeMs)
  line(`  resolution: the values are whole ms (the Workers clock ticks in 1 ms here): the mean is unbiased, the quantiles are ticks.`);
if (rec.crossCheck) line(`  cross-check (client clock, us resolution): ${rec.crossCheck.what}: ${fmt(rec.crossCheck.differenceMs, 3)} ms`);
line(`- Why this figure: ${rec.why}`);
const others = Object.entries(rec.figures).filter(([k]) => k !== FIGURE);
if (others.length)
  line(
    `- Also measured, not used: ${others.map(([k, f]) => `\`${k}\` mean ${fmt(f.mean, 3)} ms (p50 ${f.p50}, p99 ${f.p99}, n=${f.n})`).join("; ")}.`,
  );
line(
  `- Sampled as: ${
    SERVICE_MODEL === "empirical"
      ? `empirical: each service time is one of the measured values, with its measured frequency (mean ${fmt(histMean, 3)} ms). With whole-ms ticks this keeps the mean and overstates the variance (a ${fmt(histMean, 2)} ms call reads 0 or 1), so the queueing it produces is pessimistic.`
      : `lognormal fitted by ${lognormalFit.how}: mu=${fmt(lognormalFit.mu, 3)}, sigma=${fmt(lognormalFit.sigma, 3)} (median ${fmt(Math.exp(lognormalFit.mu), 3)} ms, p99 ${fmt(lognormalQ(0.99), 3)} ms, mean ${fmt(lognormalMean, 3)} ms vs measured mean ${fmt(histMean, 3)} ms).`
  }`,
);
line();
line("ASSUMED (flags; Cloudflare publishes no figure for the first two):");
line(
  `- Overload: a request that waited in its object's queue > ${QUEUE_BOUND_MS} ms fails ("Durable Object is overloaded. Requests queued for too long."), --queue-bound-ms.`,
);
line(
  "  Under sustained overload the error share is about 1 - capacity/offered whatever the bound; the bound mostly sets the served p99 (about the bound).",
);
line(`- Queue length cap: ${QUEUE_CAP > 0 ? `${QUEUE_CAP} waiting requests ("Too many requests queued")` : "none"} (--queue-cap).`);
line(
  `- Arrivals: Poisson at the offered rate for ${DURATION_S} s after a ${WARMUP_S} s warm-up (simulated, not counted); every request a distinct user.`,
);
line("- Routing: a user's home shard is a uniform hash of the user id: each request goes to one of K shards uniformly at random.");
line(
  `- Workers: scale out freely, no queueing in front; fixed Worker overhead ${OVERHEAD_MS} ms added to each latency (--worker-overhead-ms).`,
);
line("  So p99 is the object part (queue wait + service + wait for a borrowed batch). Not in it: the Worker's CPU, the Worker<->object");
line("  network round trip, and a win's own D1 write (awaited after the object is free again).");
line("- Objects: one request at a time, FIFO; service times i.i.d. from the measured distribution, the same for wins and refusals");
line('  (a win does two more SQLite statements than a refusal: see "Service time needed" for the margin).');
line(
  `- Quantity ${int(QUANTITY)}, allotment quantity/K per shard. A dry shard borrows up to ${BORROW_BATCH} units from a sibling in ring order (one extra`,
);
line(
  `  service on the giver, FIFO, never dropped; ${TRANSFER_DELAY_MS} ms each way; ${RECEIVER_WORK} service draw(s) on the receiver). The Worker's sold-out memo is not modelled.`,
);
line(
  `- Cloudflare's documented soft limit, ~${int(SOFT_LIMIT_RPS)} req/s per object, is NOT enforced by the model; the per-object rate is shown beside it.`,
);
line(`- Seed ${SEED} (one PRNG stream each for arrivals, shard choice, service; the same for every K).`);

const main = [];
for (const rate of RATES) for (const k of KS) main.push(simulate({ k, rate, seed: SEED }));

/**
 * @param {SimResult[]} rows
 * @param {{ title?: string, extra?: (r: SimResult) => string }} [o]
 */
const table = (rows, { title, extra } = {}) => {
  if (title) {
    line();
    line(title);
  }
  line();
  line(
    "| K | offered req/s | per object req/s (soft limit 1,000) | ρ per object | served req/s | errors % | p50 ms | p99 ms | max wait ms | wins | transfers |",
  );
  line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const perObject = r.rate / r.K;
    const rho = (perObject / 1000) * r.mean;
    line(
      `| ${r.K} | ${int(r.rate)} | ${int(perObject)}${perObject > SOFT_LIMIT_RPS ? " (over)" : ""} | ${fmt(rho, 2)} | ${int(r.servedPerS)} | ${fmt(r.errorsPct, 2)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.maxWait, 1)} | ${int(r.wins)} | ${int(r.transfers)} |${extra ? ` ${extra(r)} |` : ""}`,
    );
  }
};

line();
line(
  `## Results (service mean ${fmt(baseMean(SERVICE_MODEL) * SERVICE_SCALE, 3)} ms, queue bound ${QUEUE_BOUND_MS} ms, ${DURATION_S} s measured)`,
);
table(main);
line();
line("ρ = per-object arrival rate x mean service time (> 1: the object cannot keep up, its queue grows until requests pass the bound).");
line("errors = requests of the measured window that failed as overloaded; served = wins + business refusals answered, per second.");

if (!QUICK) {
  // Service time needed: the largest scale of the measured distribution with no overload error
  // in this run (bisection; same seed), next to the steady-state limit mean < K / rate.
  line();
  line(`## Service time needed (same seed; the measured distribution scaled until the run errs)`);
  line();
  line(
    "| K | offered req/s | measured mean ms | largest mean with 0 errors in this run, ms | steady state needs mean < K/rate, ms | measured / steady-state limit |",
  );
  line("|---:|---:|---:|---:|---:|---:|");
  for (const rate of RATES) {
    for (const k of KS) {
      const limit = (1000 * k) / rate;
      let lo = 0;
      let hi = (3 * limit) / baseMean(SERVICE_MODEL);
      if (simulate({ k, rate, seed: SEED, scale: hi }).failed === 0) lo = hi;
      else
        for (let i = 0; i < 18; i++) {
          const mid = (lo + hi) / 2;
          if (simulate({ k, rate, seed: SEED, scale: mid }).failed === 0) lo = mid;
          else hi = mid;
        }
      const measured = baseMean(SERVICE_MODEL) * SERVICE_SCALE;
      line(
        `| ${k} | ${int(rate)} | ${fmt(measured, 3)} | ${fmt(lo * baseMean(SERVICE_MODEL), 3)} | ${fmt(limit, 3)} | ${fmt(measured / limit, 2)} |`,
      );
    }
  }
  line();
  line(`"0 errors in this run" can sit a little above the steady-state limit: at ρ slightly over 1 a ${DURATION_S} s run ends before`);
  line(`the queue reaches ${QUEUE_BOUND_MS} ms; a longer drop would err. The steady-state column is the one to plan with.`);

  // Sensitivity: other measured figures, the other model, other bounds, and the soft limit read as a service time.
  /** @type {(SimResult & { label: string })[]} */
  const sens = [];
  const kSens = KS.filter((k) => [1, 2, 16].includes(k));
  /**
   * @param {string} label
   * @param {Partial<Parameters<typeof simulate>[0]>} opts
   */
  const add = (label, opts) => {
    for (const rate of RATES) for (const k of kSens) sens.push({ label, ...simulate({ k, rate, seed: SEED, ...opts }) });
  };
  add(`queue bound 100 ms`, { queueBoundMs: 100 });
  add(`queue bound 5,000 ms`, { queueBoundMs: 5000 });
  add(`queue cap 100 waiting`, { queueCap: 100 });
  add(`lognormal fit (mean ${fmt(lognormalMean, 3)} ms)`, { model: "lognormal", scale: 1 });
  const c4 = rec.figures[FIGURE.replace(/_c\d+$/, "_c4")];
  if (c4 && FIGURE !== FIGURE.replace(/_c\d+$/, "_c4")) {
    add(`empirical x ${fmt(c4.mean / histMean, 2)} = the 4-connection mean (${fmt(c4.mean, 3)} ms)`, {
      model: "empirical",
      scale: c4.mean / histMean,
    });
  }
  add(`what-if: mean 1 ms (the 1,000 req/s soft limit read as a service time)`, { model: "empirical", scale: 1 / histMean });
  line();
  line(`## Sensitivity (not the default inputs; K = ${kSens.join(", ")}; everything else as above)`);
  line();
  line("| variant | K | offered req/s | served req/s | errors % | p99 ms |");
  line("|---|---:|---:|---:|---:|---:|");
  for (const r of sens) line(`| ${r.label} | ${r.K} | ${int(r.rate)} | ${int(r.servedPerS)} | ${fmt(r.errorsPct, 2)} | ${fmt(r.p99, 2)} |`);

  // The tail: a drop that sells out during the run, so shards run dry and borrow.
  const tailRate = Math.max(...RATES);
  const tail = KS.map((k) => simulate({ k, rate: tailRate, seed: SEED, quantity: TAIL_QUANTITY }));
  line();
  line(
    `## Sell-out tail: quantity ${int(TAIL_QUANTITY)} at ${int(tailRate)} req/s (demand over warm-up + run: ~${int(tailRate * (WARMUP_S + DURATION_S))})`,
  );
  line();
  line(
    "| K | served req/s | errors % | wins (window) | sold-out answers | borrow requests (giver services) | units moved | first dry shard (s from start) | all shards sold out (s from start) | wins, whole run | p99 ms | max ms |",
  );
  line("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of tail) {
    line(
      `| ${r.K} | ${int(r.servedPerS)} | ${fmt(r.errorsPct, 2)} | ${int(r.wins)} | ${int(r.soldOutAnswers)} | ${int(r.transfers)} | ${int(r.transferUnits)} | ${secs(r.firstDryAt)} | ${secs(r.soldOutAt)} | ${int(r.winsAll)} | ${fmt(r.p99, 2)} | ${fmt(r.max, 2)} |`,
    );
  }
  line();
  line(
    "Wins over the whole run (warm-up included) never exceed the quantity (the script checks it); the window column counts only the measured window.",
  );
  const most = tail.reduce((a, b) => (b.transfers > a.transfers ? b : a), tail[0]);
  line("Borrowing only happens at the tail (uniform hashing keeps the shards' remaining units close to each other), and each");
  line(
    `borrow request is one extra service on the giver: at most ${int(most.transfers)} (K=${most.K}) against ${int(most.winsAll)} wins, ${fmt((100 * most.transfers) / Math.max(1, most.winsAll), 2)} % more work.`,
  );
  line("Borrow requests include the ones a dry sibling answers with 0 units; a shard declares itself sold out after every sibling did.");
}

line();
line("## Machine-readable (one line per run)");
line();
for (const r of main)
  line(
    `hot-coupon K=${r.K} offered=${r.rate}/s served=${Math.round(r.servedPerS)}/s p99_ms=${fmt(r.p99, 2)} errors=${fmt(r.errorsPct, 2)}%`,
  );
