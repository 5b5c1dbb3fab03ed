/**
 * The `--shards K` mode of a storm script: the same storm on K = 1, then on K shards.
 */
import os from "node:os";
import { printLoad } from "./machine.mjs";

/**
 * The same storm on K = 1, then on K shards, on one server, with the note that this machine
 * cannot show more than one object's capacity. `runStorm({ k })` returns `{ skipped: true }`
 * or the storm's outcome (`ok`, plus whatever `printComparison` reads).
 * Returns the exit code: 0 all checks passed, 1 a check failed, 2 a storm was skipped.
 * @template {{ ok: boolean }} R
 * @param {number} shards
 * @param {string} what
 * @param {{ runStorm: (o: { k: number }) => Promise<R | { skipped: true }>, printComparison: (runs: R[], note: string) => void, point: string }} o
 */
export async function compareShards(shards, what, { runStorm, printComparison, point }) {
  const note =
    `NOTE: this machine runs every Durable Object in one workerd process on ${os.cpus().length} cores, so K ${what} cannot show more than one object's worth of capacity here: ` +
    `K=${shards} vs K=1 req/s is not a capacity measurement. ${point}`;
  console.log(`\n${note}`);
  printLoad("start");
  /** @type {R[]} */
  const runs = [];
  for (const [i, k] of [1, shards].entries()) {
    console.log(`\n## Storm ${i + 1} of 2: K=${k}`);
    const r = await runStorm({ k });
    if ("skipped" in r) break;
    runs.push(r);
  }
  if (runs.length < 2) return 2;
  printComparison(runs, note);
  return runs.every((r) => r.ok) ? 0 : 1;
}
