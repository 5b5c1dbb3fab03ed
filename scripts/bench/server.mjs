#!/usr/bin/env node
/**
 * The production-like local server the benchmarks load.
 *
 * Why not `wrangler dev`: it puts a proxy in front of the Worker that caps this
 * machine near 900 req/s even on a hello route, so it measures the proxy.
 *
 * Why not `workerd serve --experimental wrangler.json` (docs/ARCHITECTURE.md §6): verified on
 * workerd 2026-11-02 (npm workerd 1.20261102.1): that mode only accepts the keys
 * `name, main, compatibility_date, compatibility_flags, vars, durable_objects,
 * exports, migrations, no_bundle` and rejects `d1_databases`
 * ("unknown field `d1_databases`"), so it cannot run any D1-backed route. It is
 * still started here for the bare `/health` reference (`startBareWorkerd`).
 *
 * What is measured instead: the exact bundle `wrangler deploy --dry-run` produces,
 * run by Miniflare (the library wrangler itself drives) inside workerd, with the
 * bindings wrangler derives from wrangler.toml (`unstable_getMiniflareWorkerOptions`):
 * local D1 and Durable Objects (SQLite files in a fresh state dir under .bench/),
 * listening on a free loopback port. Requests go straight to workerd (Miniflare's
 * entry worker -> our worker); Node is not on the request path.
 *
 * CLI: `npx node scripts/bench/server.mjs [--bare] [--keep-state] [--state-dir DIR] [--seconds N]` starts it,
 * prints the URL and serves until Ctrl-C or N seconds (default 3600).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, createWriteStream, existsSync, openSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BENCH_DIR = join(ROOT, ".bench");
/**
 * The app under test: this checkout, or BENCH_APP_ROOT (e.g. a `git archive` of another
 * branch under .bench/preview/, with node_modules linked to ours) to try the benchmarks
 * against routes not merged here yet. Tooling (wrangler, workerd) always comes from ROOT.
 */
export const APP_ROOT = process.env.BENCH_APP_ROOT ? resolve(process.env.BENCH_APP_ROOT) : ROOT;
export const ADMIN_TOKEN = "bench-admin-token";
export const BENCH_VARS = { ADMIN_TOKEN, RATE_LIMIT_WRITES_PER_MINUTE: "0" };

// Offline: wrangler must not reach Cloudflare (docs/ARCHITECTURE.md §7).
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";

const LOOPBACK = "127.0.0.1";

/** A free TCP port on loopback (bind port 0, read it, release it). */
export async function freePort() {
  const srv = createServer();
  srv.listen(0, LOOPBACK);
  await once(srv, "listening");
  const { port } = /** @type {import("node:net").AddressInfo} */ (srv.address());
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ timeoutMs?: number, env?: NodeJS.ProcessEnv }} [o]
 * @returns {Promise<string>} stdout and stderr
 */
function run(cmd, args, { timeoutMs = 120_000, env = process.env } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: APP_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`${cmd} ${args.join(" ")} timed out after ${timeoutMs} ms\n${out}`));
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(out);
      else reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}\n${out}`));
    });
  });
}

const defaultDistDir = () => join(BENCH_DIR, APP_ROOT === ROOT ? "dist" : "dist-preview");

/** Bundles the Worker exactly as `wrangler deploy` would (offline dry run) into .bench/dist. */
export async function buildBundle({ outDir = defaultDistDir() } = {}) {
  const wrangler = join(ROOT, "node_modules/.bin/wrangler");
  if (!existsSync(wrangler)) throw new Error("node_modules/.bin/wrangler missing: run `npm ci` first");
  await run(wrangler, ["deploy", "--dry-run", "--config", join(APP_ROOT, "wrangler.toml"), "--outdir", outDir]);
  const scriptPath = join(outDir, "index.js");
  if (!existsSync(scriptPath)) throw new Error(`wrangler produced no ${scriptPath}`);
  return scriptPath;
}

/**
 * Reads migrations/*.sql in name order and splits them on drizzle-kit's
 * `--> statement-breakpoint` markers.
 */
export function readMigrations(dir = join(APP_ROOT, "migrations")) {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .map((file) => ({
      file,
      statements: readFileSync(join(dir, file), "utf8")
        .split("--> statement-breakpoint")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    }));
}

/**
 * Applies every migration not applied yet, one D1 batch per file (a batch is a transaction),
 * recording each in `_bench_migrations` so a restart on kept state (the crash test) skips it.
 * @param {Awaited<ReturnType<import("miniflare").Miniflare["getD1Database"]>>} db
 */
export async function applyMigrations(db) {
  await db.prepare("CREATE TABLE IF NOT EXISTS _bench_migrations (file TEXT PRIMARY KEY)").run();
  const done = new Set((await db.prepare("SELECT file FROM _bench_migrations").all()).results.map((/** @type {any} */ r) => r.file));
  const applied = [];
  for (const { file, statements } of readMigrations()) {
    if (done.has(file)) continue;
    await db.batch([...statements.map((s) => db.prepare(s)), db.prepare("INSERT INTO _bench_migrations (file) VALUES (?)").bind(file)]);
    applied.push(`${file} (${statements.length} statements)`);
  }
  return applied.length > 0 ? applied : ["none pending"];
}

/**
 * @param {string} url
 * @param {{ timeoutMs?: number }} [o]
 */
async function waitForHealth(url, { timeoutMs = 30_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (let i = 0; i < 600 && Date.now() < deadline; i++) {
    try {
      const res = await fetch(new URL("/health", url), { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = String(/** @type {{ cause?: unknown }} */ (err)?.cause ?? err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url}/health not ready after ${timeoutMs} ms (${last})`);
}

/** @type {Set<() => Promise<void>>} */
const stoppers = new Set();
let hooksInstalled = false;
function installExitHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  /**
   * @param {NodeJS.Signals} sig
   * @param {number} code
   */
  const onSignal = (sig, code) => {
    process.on(sig, async () => {
      await Promise.race([Promise.allSettled([...stoppers].map((s) => s())), new Promise((r) => setTimeout(r, 3000))]);
      process.exit(code);
    });
  };
  onSignal("SIGINT", 130);
  onSignal("SIGTERM", 143);
  onSignal("SIGHUP", 129);
}

/**
 * Starts the production-like server: bundle -> Miniflare/workerd with wrangler.toml's
 * bindings, fresh D1/DO state in .bench/state/<run>, migrations applied, bench vars set.
 *
 * `inspectorPort` (off by default) opens workerd's V8 inspector (DevTools protocol) on
 * 127.0.0.1: 0 picks a free port. The result then has `inspectorUrl` (ws://127.0.0.1:<port>);
 * `GET http://127.0.0.1:<port>/json` lists its targets. Used by scripts/profile/cpu.mjs.
 *
 * `stateDir` reuses the D1/DO state of an earlier run (with `keepState`, it survives the stop):
 * the crash test restarts on the state a killed server left.
 *
 * @param {{ vars?: Record<string, string>, build?: boolean, keepState?: boolean, quiet?: boolean, direct?: boolean,
 *   inspectorPort?: number, stateDir?: string }} [o]
 * @returns {Promise<{ url: string, mode: string, stateDir: string, logFile: string, inspectorUrl?: string,
 *   d1: import("./lib/fixtures.mjs").LocalD1,
 *   scheduled(cron: string, scheduledTime?: number): Promise<void>,
 *   stop(): Promise<void> }>}
 */
export async function startServer({
  vars = {},
  build = true,
  keepState = false,
  quiet = false,
  direct = process.env.BENCH_DIRECT !== "0",
  inspectorPort = undefined,
  stateDir: reuseStateDir = undefined,
} = {}) {
  const { Miniflare, Log, LogLevel, convertV4MiniflareOptions } = await import("miniflare");
  const { unstable_getMiniflareWorkerOptions } = await import("wrangler");

  const scriptPath = build ? await buildBundle() : join(defaultDistDir(), "index.js");
  const runId = `${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}`;
  // BENCH_STATE_ROOT (e.g. /dev/shm/bench) takes the disk's fsync cost out of the numbers.
  const stateDir = reuseStateDir ?? join(process.env.BENCH_STATE_ROOT ?? join(BENCH_DIR, "state"), runId);
  mkdirSync(stateDir, { recursive: true });
  const logFile = join(BENCH_DIR, "logs", `${runId}.log`);
  mkdirSync(dirname(logFile), { recursive: true });
  const logStream = createWriteStream(logFile);

  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(APP_ROOT, "wrangler.toml"));
  // The bundle is one ES module; module rules only matter for unbundled sources (and v5 refuses them).
  delete workerOptions.modulesRules;
  // Miniflare 5 takes a new option shape; wrangler (and we) write the v4 shape and convert.
  let mf;
  try {
    mf = new Miniflare(
      convertV4MiniflareOptions({
        host: LOOPBACK,
        port: 0, // workerd picks a free port; `mf.ready` reports it
        // One root for D1, DO, KV, cache ... state: fresh per run.
        resourcePersistencePath: stateDir,
        log: new Log(LogLevel.WARN),
        logRequests: false,
        ...(inspectorPort !== undefined ? { inspectorPort, inspectorHost: LOOPBACK } : {}),
        // The Worker logs one JSON line per request; keep them off the terminal (and out of
        // the benchmark process's stdout) but on disk for inspection.
        handleStructuredLogs: ({ level, message }) => logStream.write(`${level} ${message}\n`),
        workers: [
          {
            ...workerOptions,
            name: "edge-commerce-api",
            modules: [{ type: "ESModule", path: scriptPath, contents: readFileSync(scriptPath, "utf8") }],
            modulesRoot: dirname(scriptPath),
            bindings: { .../** @type {Record<string, unknown> | undefined} */ (workerOptions.bindings), ...BENCH_VARS, ...vars },
            // A socket straight into our Worker, without Miniflare's entry worker in front
            // (which tripled workerd's CPU per request on /health here); production has no
            // such layer either. `direct: false` keeps the entry-worker URL.
            ...(direct ? { unsafeDirectSockets: [{ host: LOOPBACK, port: 0 }] } : {}),
          },
        ],
      }),
    );
  } catch (err) {
    logStream.end();
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    stoppers.delete(stop);
    try {
      await mf.dispose();
    } finally {
      logStream.end();
      if (!keepState) rmSync(stateDir, { recursive: true, force: true });
    }
  };
  stoppers.add(stop);
  installExitHooks();
  // Last resort on a crash: Miniflare kills workerd by itself; drop the state dir too.
  process.once("exit", () => {
    if (!keepState) rmSync(stateDir, { recursive: true, force: true });
  });

  try {
    const readyUrl = await mf.ready;
    const url = direct ? (await mf.unsafeGetDirectURL("edge-commerce-api")).origin : readyUrl.origin;
    const db = await mf.getD1Database("DB");
    const applied = await applyMigrations(db);
    await waitForHealth(url);
    if (!quiet) {
      const app = APP_ROOT === ROOT ? "" : `, app ${APP_ROOT}`;
      console.error(
        `[bench] server ${url} (Miniflare/workerd, ${direct ? "direct socket" : "entry worker"}, bundle ${scriptPath}${app}); migrations: ${applied.join(", ")}`,
      );
    }
    /** @type {import("./lib/fixtures.mjs").LocalD1} */
    const d1 = {
      async all(sql, ...params) {
        return (
          await db
            .prepare(sql)
            .bind(...params)
            .all()
        ).results;
      },
      async first(sql, ...params) {
        return db
          .prepare(sql)
          .bind(...params)
          .first();
      },
      raw: db,
    };
    const mode = `Miniflare/workerd, wrangler deploy --dry-run bundle, ${direct ? "direct socket to the Worker" : "through Miniflare's entry worker"}${inspectorPort !== undefined ? ", V8 inspector on" : ""}`;
    const inspectorUrl = inspectorPort !== undefined ? (await mf.getInspectorURL()).toString() : undefined;
    // The Worker's scheduled handler, as Cron Triggers call it (crons never fire by themselves locally).
    /**
     * @param {string} cron
     * @param {number} [scheduledTime]
     */
    const scheduled = async (cron, scheduledTime = Date.now()) => {
      const worker = await mf.getWorker("edge-commerce-api");
      await worker.scheduled({ cron, scheduledTime: new Date(scheduledTime) });
    };
    return { url, mode, stateDir, logFile, d1, scheduled, stop, ...(inspectorUrl ? { inspectorUrl } : {}) };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `workerd serve --experimental <wrangler.json>` with no D1 (the mode cannot bind D1):
 * only good for the bare `/health` reference number. Generated from wrangler.toml.
 */
export async function startBareWorkerd({ vars = {}, quiet = false } = {}) {
  const { unstable_readConfig } = await import("wrangler");
  const config = unstable_readConfig({ config: join(APP_ROOT, "wrangler.toml") });
  const dir = join(BENCH_DIR, "bare");
  mkdirSync(dir, { recursive: true });
  /** @type {Record<string, unknown>} */
  const json = {
    name: config.name,
    main: resolve(APP_ROOT, config.main),
    compatibility_date: config.compatibility_date,
    compatibility_flags: config.compatibility_flags ?? [],
    vars: { ...config.vars, ...BENCH_VARS, ...vars },
  };
  const doBindings = config.durable_objects?.bindings ?? [];
  if (doBindings.length > 0) {
    json.durable_objects = {
      bindings: doBindings.map((/** @type {{ name: string, class_name: string }} */ b) => ({ name: b.name, class_name: b.class_name })),
    };
    if (config.migrations?.length) json.migrations = config.migrations;
  }
  const configPath = join(dir, "wrangler.json");
  writeFileSync(configPath, JSON.stringify(json, null, 2));

  const port = await freePort();
  const bin = join(ROOT, "node_modules/workerd/bin/workerd");
  const logFile = join(dir, "workerd.log");
  // workerd writes its request logs straight into the file: Node (the load generator) stays out.
  const logFd = openSync(logFile, "w");
  const child = spawn(bin, ["serve", "--experimental", configPath, "-s", `http=${LOOPBACK}:${port}`], {
    cwd: dir,
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const killChild = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  };
  process.once("exit", killChild);
  const stop = async () => {
    stoppers.delete(stop);
    process.removeListener("exit", killChild);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await Promise.race([once(child, "exit"), new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  };
  stoppers.add(stop);
  installExitHooks();
  const url = `http://${LOOPBACK}:${port}`;
  try {
    await waitForHealth(url);
  } catch (err) {
    await stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${readFileSync(logFile, "utf8").slice(0, 2000)}`);
  }
  if (!quiet) console.error(`[bench] bare workerd ${url} (workerd serve --experimental ${configPath}; no D1)`);
  return { url, mode: "workerd serve --experimental wrangler.json (no D1)", stop };
}

// CLI
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const bare = process.argv.includes("--bare");
  const d = process.argv.indexOf("--state-dir");
  const stateDir = d > 0 ? resolve(process.argv[d + 1]) : undefined;
  /** @type {{ url: string, mode: string, stop(): Promise<void>, stateDir?: string, logFile?: string }} */
  const server = bare ? await startBareWorkerd() : await startServer({ keepState: process.argv.includes("--keep-state"), stateDir });
  console.log(JSON.stringify({ url: server.url, mode: server.mode, stateDir: server.stateDir, logFile: server.logFile }));
  const i = process.argv.indexOf("--seconds");
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 3600;
  console.error(`[bench] Ctrl-C to stop (stops by itself after ${seconds} s)`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await server.stop();
}
