import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Redis } from "@upstash/redis/cloudflare";
import { createApp } from "../../src/app";
import type { RedisLanes } from "../../src/infra/redis";
import type { ApiResponse } from "./http";

/** Whether the global setup found a redis-server (under CI=true it fails instead of skipping). */
export const redisAvailable = Boolean(env.TEST_REDIS_URL);

/** A raw client on the real Redis, for assertions. */
export function rawRedis(): Redis {
  return new Redis({ url: env.TEST_REDIS_URL, token: env.TEST_REDIS_TOKEN, retry: false, enableAutoPipelining: false });
}

/** Both Redis lanes (src/infra/redis.ts) on the raw client: for stores built by hand in a test. */
export function rawLanes(): RedisLanes {
  const redis = rawRedis();
  return { request: { name: "request", redis, attempts: 1 }, background: { name: "background", redis, attempts: 1 } };
}

/**
 * An app whose env points at the real Redis (through the bridge) with a key
 * prefix of its own, so test files never share keys. `redisUrl` overrides the
 * URL (e.g. a closed port to show the D1 fallback).
 */
export function appWithRedis(opts: { prefix: string; redisUrl?: string; extraEnv?: Record<string, string> }) {
  const app = createApp();
  const appEnv = {
    ...env,
    UPSTASH_REDIS_REST_URL: opts.redisUrl ?? env.TEST_REDIS_URL,
    UPSTASH_REDIS_REST_TOKEN: env.TEST_REDIS_TOKEN,
    REDIS_KEY_PREFIX: opts.prefix,
    ...opts.extraEnv,
  };
  async function call<T = any>(
    method: string,
    path: string,
    json?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> {
    const ctx = createExecutionContext();
    const init: RequestInit = { method, headers: { ...headers } };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers = { ...headers, "content-type": "application/json" };
    }
    const res = await app.request(`http://example.com${path}`, init, appEnv, ctx);
    await waitOnExecutionContext(ctx);
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
  }
  return {
    env: appEnv,
    get: <T = any>(path: string, headers?: Record<string, string>) => call<T>("GET", path, undefined, headers),
    post: <T = any>(path: string, json: unknown) => call<T>("POST", path, json),
  };
}
