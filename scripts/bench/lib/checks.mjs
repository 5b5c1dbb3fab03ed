/**
 * The exactness section every storm ends with: pass/fail checks, the latency targets
 * (reported MET/MISSED, never a failure), and polling a reading until it is stable.
 */
import { fmt, fmtInt } from "./report.mjs";

/** Collects pass/fail lines for the exactness section; `ok()` is the overall verdict. */
export class Checks {
  /** @param {string} title */
  constructor(title) {
    this.title = title;
    /** @type {string[]} */
    this.lines = [];
    this.failed = 0;
  }
  /**
   * @param {string} name
   * @param {boolean} pass
   * @param {string} [detail]
   */
  check(name, pass, detail = "") {
    if (!pass) this.failed++;
    this.lines.push(`- [${pass ? "x" : " "}] ${pass ? "PASS" : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
    return pass;
  }
  /**
   * A performance target: printed MET/MISSED with the checks, never a failure of the script.
   * @param {string} name
   * @param {boolean} met
   * @param {string} [detail]
   */
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
 * @param {Checks} checks
 * @param {import("./load.mjs").LoadRun} run
 * @param {{ p99Factor?: number, maxMs?: number, ceiling?: import("./load.mjs").LoadRun }} [o]
 */
export function latencyChecks(checks, run, { p99Factor = 5, maxMs = 5000, ceiling } = {}) {
  const { p50, p99, max } = run;
  const tailMet = Number.isFinite(p50) && Number.isFinite(p99) && p99 <= p99Factor * p50;
  const ceilingNote = ceiling
    ? `; same-run ${ceiling.label}: p99 ${fmt(ceiling.p99, 0)} ms = ${fmt(ceiling.p99 / ceiling.p50, 1)} x its p50`
    : "";
  checks.target(
    `${run.label}: p99 <= ${p99Factor} x p50`,
    tailMet,
    `p99 ${fmt(p99, 0)} ms, p50 ${fmt(p50, 0)} ms (p99 = ${fmt(p99 / p50, 1)} x p50; limit ${fmt(p99Factor * p50, 0)} ms)${ceilingNote}`,
  );
  const maxMet = Number.isFinite(max) && max < maxMs;
  checks.target(`${run.label}: max < ${fmtInt(maxMs)} ms`, maxMet, `max ${fmt(max, 0)} ms`);
  console.log(
    `latency ${run.label.replace(/\s+/g, "_")} p50_ms=${fmt(p50, 0)} p99_ms=${fmt(p99, 0)} max_ms=${fmt(max, 0)} ${tailMet && maxMet ? "MET" : "MISSED"}`,
  );
  return tailMet && maxMet;
}

/**
 * Polls `read()` until two reads `interval` ms apart are equal (bounded by `tries`).
 * @template T
 * @param {() => Promise<T>} read
 * @param {{ interval?: number, tries?: number }} [o]
 * @returns {Promise<{ value: T, stable: boolean }>}
 */
export async function readStable(read, { interval = 500, tries = 20 } = {}) {
  let value = await read();
  let prev = JSON.stringify(value);
  for (let i = 0; i < tries; i++) {
    await new Promise((r) => setTimeout(r, interval));
    const cur = await read();
    const s = JSON.stringify(cur);
    if (s === prev) return { value: cur, stable: true };
    prev = s;
    value = cur;
  }
  return { value, stable: false };
}
