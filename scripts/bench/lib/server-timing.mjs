/**
 * The app's `Server-Timing` header (DESIGN: on every /api response): parsing one value, the
 * D1 meter inside it, and the per-run aggregate `load` keeps over every response.
 */

/** @typedef {import("autocannon").RawHeaders} RawHeaders */
/** @typedef {{ count: number | undefined, nested: number, dur: number | undefined }} TimingEntry */
/**
 * @typedef {object} D1Meter
 * @property {number} calls
 * @property {number} nested
 * @property {number | undefined} rowsRead
 * @property {number | undefined} rowsWritten
 * @property {number | undefined} writeTx
 * @property {number} dur
 */
/** @typedef {Record<number, number>} Histogram hops -> responses */
/**
 * @typedef {object} HopsSummary
 * @property {Histogram} histogram
 * @property {Record<number, Histogram>} byStatus
 * @property {number} mean
 * @property {number} max
 * @property {number} responses
 */
/**
 * @typedef {object} MetricSummary
 * @property {number} totalCalls
 * @property {number} totalNested
 * @property {number} totalDurMs
 * @property {number} callsPerResponse
 * @property {number} nestedPerResponse
 * @property {number} msPerCall
 */
/** @typedef {{ riders: number, batches: number, sumSizes: number, max: number }} GroupAggregate */
/**
 * @typedef {object} TimingSummary
 * @property {number} responses
 * @property {number} withHeader
 * @property {number} unparsable
 * @property {Record<string, MetricSummary>} metrics
 * @property {{ writeTx: number, perResponse: number, groups: Record<string, GroupAggregate & { mean: number }> }} d1Writes
 */

/** The metrics the app reports (docs/ARCHITECTURE.md §8: `Server-Timing` on every /api response). */
export const TIMING_METRICS = ["d1", "do", "redis"];

/**
 * Parses one `Server-Timing` value, e.g.
 * `d1;desc="2 calls";dur=3.1, do;desc="1 call";dur=0.8, hops;desc="3 sequential"`,
 * into `{ d1: {count: 2, nested: 0, dur: 3.1}, do: {...}, hops: {count: 3, nested: 0, dur: undefined} }`:
 * `count` is the leading integer of `desc`, `nested` the N of a `(+N nested)` in it (round
 * trips a callee made before answering, e.g. a Durable Object writing D1), `dur` the
 * metric's `dur` (ms, total over its calls). Commas and semicolons inside quotes are respected.
 * @param {string} value
 * @returns {Record<string, TimingEntry>}
 */
export function parseServerTiming(value) {
  /** @type {Record<string, TimingEntry>} */
  const out = {};
  for (const entry of splitOutsideQuotes(value, ",")) {
    const [name, ...params] = splitOutsideQuotes(entry, ";").map((p) => p.trim());
    if (!name) continue;
    /** @type {TimingEntry} */
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

/**
 * @param {string} s
 * @param {string} sep
 */
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
 * @returns {D1Meter | undefined}
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
    /** @param {RegExp} re */
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
 * @param {RawHeaders | undefined} headers
 * @param {string} name
 * @returns {string | undefined}
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
export class TimingCollector {
  constructor() {
    this.responses = 0;
    this.withHeader = 0;
    this.unparsable = 0;
    /** @type {Map<number, number>} hops -> count */
    this.hops = new Map();
    /** @type {Map<number, Map<number, number>>} status -> (hops -> count) */
    this.hopsByStatus = new Map();
    /** @type {Record<string, { calls: number, nested: number, dur: number, durSamples: number }>} */
    this.metrics = Object.fromEntries(TIMING_METRICS.map((k) => [k, { calls: 0, nested: 0, dur: 0, durSamples: 0 }]));
    this.writeTx = 0; // D1 write transactions the responses' meters counted (a shared batch once, by its sender)
    /** @type {Map<string, GroupAggregate>} kind -> shared D1 batches (src/shared/group-commit.ts) */
    this.groups = new Map();
  }
  /**
   * @param {number} status
   * @param {RawHeaders | undefined} headers
   */
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
      const kind = g[1] ?? "";
      let agg = this.groups.get(kind);
      if (!agg) {
        agg = { riders: 0, batches: 0, sumSizes: 0, max: 0 };
        this.groups.set(kind, agg);
      }
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
    if (!byStatus) {
      byStatus = new Map();
      this.hopsByStatus.set(status, byStatus);
    }
    byStatus.set(hops, (byStatus.get(hops) ?? 0) + 1);
    for (const k of TIMING_METRICS) {
      const m = t[k];
      const agg = this.metrics[k];
      if (!m || !agg) continue;
      // A metric listed without a count in `desc` is one call.
      agg.calls += m.count ?? 1;
      agg.nested += m.nested;
      if (m.dur !== undefined && Number.isFinite(m.dur)) {
        agg.dur += m.dur;
        agg.durSamples += m.count ?? 1;
      }
    }
  }
  /**
   * `{hops, timing}` for the run result; `hops` is null when no response had the header.
   * @returns {{ hops: HopsSummary | null, timing: TimingSummary }}
   */
  result() {
    const n = this.withHeader;
    /** @param {Map<number, number>} map */
    const hist = (map) => Object.fromEntries([...map].sort(([a], [b]) => a - b));
    /** @type {HopsSummary | null} */
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
    /** @type {Record<string, MetricSummary>} */
    const metrics = {};
    for (const [k, a] of Object.entries(this.metrics)) {
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
      [...this.groups]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([kind, g]) => [kind, { ...g, mean: g.batches > 0 ? g.sumSizes / g.batches : NaN }]),
    );
    const d1Writes = { writeTx: this.writeTx, perResponse: n > 0 ? this.writeTx / n : NaN, groups };
    return { hops, timing: { responses: this.responses, withHeader: n, unparsable: this.unparsable, metrics, d1Writes } };
  }
}
