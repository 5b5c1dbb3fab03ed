#!/usr/bin/env node
// `npm run dev`: everything a fresh clone needs to serve http://localhost:8787 offline.
// 1. .dev.vars from .dev.vars.example when missing (git-ignored local secrets)
// 2. local D1 migrations, 3. idempotent demo seed, 4. wrangler dev with cron testing.
import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";
import { redisReachable, startBridge } from "./upstash-bridge.mjs";

const offline = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };
const port = process.env.PORT ?? "8787";
const inspectorPort = process.env.INSPECTOR_PORT ?? "9329";

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("created .dev.vars from .dev.vars.example (ADMIN_TOKEN=dev-admin-token)");
}

console.log("applying D1 migrations to the local database...");
execFileSync("npx", ["wrangler", "d1", "migrations", "apply", "DB", "--local"], {
  stdio: ["ignore", "ignore", "inherit"],
  env: { ...offline, CI: "true" },
});
// The console and docs pages are string modules made from their sources (scripts/gen-assets.mjs): current before serving.
execFileSync("npx", ["node", "scripts/gen-assets.mjs"], { stdio: "inherit", env: offline });
execFileSync("npx", ["node", "scripts/seed.mjs"], { stdio: "inherit", env: offline });

const args = ["wrangler", "dev", "--port", port, "--inspector-port", inspectorPort, "--ip", "127.0.0.1", "--test-scheduled"];
// A local redis-server answering? Put the Upstash-REST bridge in front of it and point the Worker at it.
/** @type {Awaited<ReturnType<typeof startBridge>> | undefined} */
let bridge;
if (await redisReachable(process.env.REDIS_URL)) {
  bridge = await startBridge({ port: Number(process.env.REDIS_BRIDGE_PORT ?? 8079), token: "dev-bridge-token" });
  args.push(
    "--var",
    `UPSTASH_REDIS_REST_URL:${bridge.url}`,
    "--var",
    `UPSTASH_REDIS_REST_TOKEN:${bridge.token}`,
    "--var",
    "REDIS_KEY_PREFIX:dev:",
  );
  console.log(`redis: Upstash-REST bridge ${bridge.url} -> ${process.env.REDIS_URL ?? "redis://127.0.0.1:6379"}`);
} else {
  console.log("redis: no local redis-server; rankings and caches fall back to D1");
}
console.log(`starting: npx ${args.join(" ")}`);
console.log(`  API   http://localhost:${port}/api/v1/products`);
console.log(`  docs  http://localhost:${port}/docs`);
console.log(`  console http://localhost:${port}/admin/console`);
const child = spawn("npx", args, { stdio: "inherit", env: offline });
for (const sig of /** @type {const} */ (["SIGINT", "SIGTERM"])) process.on(sig, () => child.kill(sig));
child.on("exit", async (code) => {
  await bridge?.close();
  process.exit(code ?? 0);
});
