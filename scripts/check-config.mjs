#!/usr/bin/env node
/**
 * `npm run config:check`: the write limits are configured twice on purpose (src/shared/rate-limit.ts):
 * the `[[ratelimits]]` binding enforces `simple.limit`, and the var switches it on and is the
 * number announced in `RateLimit-Limit`. For the top level and every [env.*], a non-zero
 * RATE_LIMIT_WRITES_PER_MINUTE / RATE_LIMIT_IP_WRITES_PER_MINUTE must have its binding
 * (WRITES_PER_USER / WRITES_PER_IP) with that limit and a 60 s period, and METRICS must be bound.
 */
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_readConfig } from "wrangler";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const LIMITS = [
  ["RATE_LIMIT_WRITES_PER_MINUTE", "WRITES_PER_USER"],
  ["RATE_LIMIT_IP_WRITES_PER_MINUTE", "WRITES_PER_IP"],
];
const path = process.env.WRANGLER_CONFIG ?? join(root, "wrangler.toml");
const top = unstable_readConfig({ config: path });
// Environment names, from the section headers (`[env.production]`, `[env.production.vars]`, `[[env.staging.ratelimits]]`).
const envs = [undefined, ...new Set([...readFileSync(path, "utf8").matchAll(/^\s*\[{1,2}env\.([A-Za-z0-9_-]+)/gm)].map((m) => m[1]))];
const bad = [];
for (const env of envs) {
  const config = env ? unstable_readConfig({ config: path, env }) : top;
  const where = env ? `[env.${env}]` : "top level";
  for (const [name, binding] of LIMITS) {
    const value = Number(config.vars?.[name] ?? 0);
    if (value === 0) continue;
    const rl = (config.ratelimits ?? []).find(
      (/** @type {{ name: string, simple: { limit: number, period: number } }} */ r) => r.name === binding,
    );
    if (!rl) bad.push(`${where}: ${name} = ${value} but no [[ratelimits]] ${binding}`);
    else if (rl.simple.limit !== value || rl.simple.period !== 60)
      bad.push(`${where}: ${name} = ${value} but ${binding} is ${rl.simple.limit} per ${rl.simple.period} s (must be ${value} per 60 s)`);
  }
  if (!(config.analytics_engine_datasets ?? []).some((/** @type {{ binding: string }} */ d) => d.binding === "METRICS"))
    bad.push(`${where}: no [[analytics_engine_datasets]] METRICS (data points are dropped)`);
}
if (bad.length > 0) {
  console.error(`config: write limits and metrics do not match wrangler.toml's bindings:\n  ${bad.join("\n  ")}`);
  process.exit(1);
}
console.log(`config: write limits and METRICS bound in ${envs.map((e) => e ?? "top level").join(", ")}`);
