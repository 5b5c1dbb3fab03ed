/**
 * The machine a run happened on (CPU, memory, OS, tool versions) and its load average:
 * every benchmark prints them beside its numbers, since other processes on a shared
 * machine skew every one of them.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { ROOT } from "../server.mjs";

/** @param {string} name */
function pkgVersion(name) {
  try {
    return String(JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version);
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

export const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");

/**
 * Prints the machine, plus `extra` lines (e.g. `{ server: mode }`).
 * @param {Record<string, string>} [extra]
 */
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

/** Other processes on this (shared) machine skew every number: print the load next to them. */
export function printLoad(when = "end") {
  console.log(`\nload average at ${when} (1/5/15 min): ${loadavg()}`);
}
