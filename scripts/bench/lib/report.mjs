/**
 * What the benchmarks print: markdown tables of runs (pasteable into docs/PERFORMANCE.md),
 * the `Server-Timing` table under them, the ratio to the same-run `/health` ceiling, and
 * what D1 did per storm, each with a machine-readable line for grep.
 */
import { TIMING_METRICS } from "./server-timing.mjs";

/** @typedef {import("./load.mjs").LoadRun} LoadRun */
/** @typedef {import("./http.mjs").D1GroupStats} D1GroupStats */

/**
 * Fixed decimals ("-" when not a finite number).
 * @param {number | undefined} n
 */
export const fmt = (n, d = 1) => (n !== undefined && Number.isFinite(n) ? n.toFixed(d) : "-");
/**
 * Integer with thousands separators ("-" when not a finite number).
 * @param {number | undefined} n
 */
export const fmtInt = (n) => (n !== undefined && Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");

/**
 * `201: 1,000, 409: 9,000, socket errors: 2`.
 * @param {Pick<LoadRun, "statusCounts" | "socketErrors" | "timeouts">} r
 */
export function statusSummary(r) {
  const parts = Object.entries(r.statusCounts)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([s, c]) => `${s}: ${fmtInt(c)}`);
  if (r.socketErrors) parts.push(`socket errors: ${r.socketErrors}`);
  if (r.timeouts) parts.push(`timeouts: ${r.timeouts}`);
  return parts.join(", ") || "none";
}

/**
 * Prints runs as a markdown table (pasteable into docs/PERFORMANCE.md).
 * @param {string} title
 * @param {LoadRun[]} rows
 */
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

/** @param {Record<string, number>} h */
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
 * @param {LoadRun[]} rows
 */
export function printHops(rows) {
  const withTiming = rows.filter((r) => r.timing);
  if (withTiming.length === 0) return;
  if (withTiming.every((r) => !r.hops)) {
    console.log("\nServer-Timing: n/a (no response in these runs carried the header)");
    return;
  }
  console.log("\nServer-Timing (every response; hops = sequential D1+DO round trips, a parallel fan-out counts once):\n");
  console.log(
    `| run | with header | hops: responses | mean hops | ${TIMING_METRICS.map((k) => `${k} calls/resp | ${k} ms/call`).join(" | ")} |`,
  );
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
      if (!m) return "n/a | n/a";
      const nested = m.totalNested > 0 ? ` (+${fmt(m.nestedPerResponse, 2)} nested)` : "";
      return `${fmt(m.callsPerResponse, 2)}${nested} | ${m.totalCalls > 0 ? fmt(m.msPerCall, 2) : "-"}`;
    });
    console.log(`| ${r.label} | ${seen} | ${fmtHist(r.hops.histogram)}${perStatus} | ${fmt(r.hops.mean, 2)} | ${cells.join(" | ")} |`);
  }
}

/** @param {unknown} s */
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
 * @param {Pick<LoadRun, "rps" | "label">} ours
 * @param {Pick<LoadRun, "rps" | "label">} health
 * @param {{ target?: number, name?: string }} [o]
 */
export function printRatio(ours, health, { target, name } = {}) {
  const ratio = ours.rps / health.rps;
  console.log(
    `\n${ours.label}: ${fmtInt(ours.rps)} req/s = ${fmt(ratio * 100)}% of same-run "${health.label}" (${fmtInt(health.rps)} req/s)`,
  );
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
 * @param {LoadRun} run
 * @param {string} name
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

/**
 * D1 writes a storm caused after its answers (ctx.waitUntil work such as `orders.settle`,
 * which no response's Server-Timing can carry), from the server's group-commit counters
 * read before the storm and after it settled: `d1tx <name>.after=<write tx per answer>`
 * and `d1group <kind> batches=.. mean=.. requests=.. (after the answer)`.
 * @param {string} name
 * @param {Record<string, D1GroupStats> | undefined} before
 * @param {Record<string, D1GroupStats> | undefined} after
 * @param {number} answers
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

/**
 * The last line of a bench that ran its storm at K = 1 and K = K: every run passed, or which failed.
 * @param {{ ok: boolean, k?: number, checksFailed: number }[]} runs
 */
export function printVerdict(runs) {
  const failed = runs.filter((r) => !r.ok);
  console.log(
    `\n${failed.length === 0 ? "ALL CHECKS PASSED (both storms)" : `CHECKS FAILED: ${failed.map((r) => `K=${r.k} (${r.checksFailed})`).join(", ")}`}`,
  );
}
