import { Redis } from "@upstash/redis/cloudflare";
import type { Config } from "../config";
import { errorFields, log } from "../shared/logger";

/** Longest a Redis call may take on the request path before we fall back to D1. */
export const REDIS_TIMEOUT_MS = 250;

/**
 * The Upstash client, or undefined when Redis is not configured. No retries and
 * a short per-call timeout: Redis is a cache here, so a slow Redis must cost a
 * few hundred milliseconds at most, never an error.
 */
export function createRedis(config: Config): Redis | undefined {
  if (!config.redis) return undefined;
  return new Redis({
    url: config.redis.url,
    token: config.redis.token,
    retry: false,
    enableAutoPipelining: false,
    // A signal *function* makes an abort throw (a static signal would resolve to "Aborted").
    signal: () => AbortSignal.timeout(REDIS_TIMEOUT_MS),
  });
}

/**
 * Runs a Redis operation as best effort: on failure or timeout logs a warning
 * and returns `fallback` (for reads, `undefined` means "go to D1").
 */
export async function tryRedis<T>(op: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    log("warn", "redis call failed; falling back", { op, ...errorFields(err), stack: undefined });
    return undefined;
  }
}
