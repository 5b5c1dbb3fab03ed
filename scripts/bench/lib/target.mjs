/**
 * Where a storm runs. By default: a local production-like server the script starts
 * (scripts/bench/server.mjs), whose D1 the checks can read. With `--url <base>`: a deployed
 * Worker (say staging) an operator rehearses a sale on. Then nothing is started, every
 * fixture is created through the admin API under a run tag (so reruns never collide), and
 * every check goes through the public and admin API (docs/OPERATIONS.md, "Rehearsing a sale on staging").
 *
 * Remote credentials: `--admin-token` or env ADMIN_TOKEN (required), and `--jwt-secret` or
 * env JWT_SECRET when the Worker enforces user JWTs (the script signs one per user). Prefer
 * the environment: a flag's value shows in the process list.
 */
import { startServer } from "../server.mjs";
import { arg, hasArg } from "./args.mjs";
import { allowRemoteTarget, api } from "./http.mjs";

/**
 * @typedef {object} Target
 * @property {string} url
 * @property {string} mode     how the server runs, for the report
 * @property {boolean} remote  true with `--url`: no local D1, HTTP checks only
 * @property {import("./fixtures.mjs").LocalD1 | undefined} d1  the local server's D1 (undefined when remote)
 * @property {string} tag      unique per run: prefixes the names of what the run creates
 * @property {() => Promise<void>} stop
 */

/** The `--url` options, for a script's usage text. */
export const TARGET_USAGE =
  "--url https://staging.example.com  run against a deployed Worker (HTTP checks only; needs ADMIN_TOKEN, and JWT_SECRET when user routes need JWTs)";

/** Whether the run targets a deployed Worker (`--url`). */
export const isRemoteRun = () => hasArg("url");

/**
 * Starts the local server, or (with `--url`) checks that the deployed Worker answers
 * `/health` and that the admin token is accepted.
 * @returns {Promise<Target>}
 */
export async function openTarget() {
  const tag = `rehearsal-${new Date().toISOString().replace(/\D/g, "").slice(0, 14)}-${process.pid}`;
  const url = arg("url", undefined);
  if (url === undefined) {
    const server = await startServer();
    return { url: server.url, mode: server.mode, remote: false, d1: server.d1, tag, stop: server.stop };
  }
  const base = new URL(url).origin;
  const adminToken = arg("admin-token", undefined) ?? process.env.ADMIN_TOKEN;
  if (!adminToken) throw new Error("--url needs the Worker's admin token: env ADMIN_TOKEN (or --admin-token)");
  const jwtSecret = arg("jwt-secret", undefined) ?? (process.env.JWT_SECRET || undefined);
  allowRemoteTarget(base, { adminToken, jwtSecret });
  const health = await fetch(new URL("/health", base), { signal: AbortSignal.timeout(10_000) });
  if (!health.ok) throw new Error(`${base}/health answered ${health.status}`);
  // A read-only admin route: a wrong token is 401/403 here, before any fixture is created.
  const probe = await api(base, "GET", "/api/v1/admin/coupons?limit=1", undefined, { admin: true });
  if (probe.status !== 200)
    throw new Error(`the admin token was refused by ${base}: ${probe.status} ${JSON.stringify(probe.json).slice(0, 200)}`);
  const auth = jwtSecret ? "user JWTs signed with the given JWT_SECRET" : "no user JWTs (the Worker must not enforce them)";
  return {
    url: base,
    mode: `deployed Worker at ${base} (--url; HTTP checks only, ${auth}; run tag ${tag})`,
    remote: true,
    d1: undefined,
    tag,
    stop: async () => {},
  };
}

/**
 * The local D1, for the checks only a local run can make.
 * @param {Target} target
 */
export function localD1(target) {
  if (!target.d1) throw new Error("local D1 asked for on a --url run");
  return target.d1;
}
