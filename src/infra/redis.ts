import { Redis } from "@upstash/redis/cloudflare";
import type { Config } from "../config";
import { errorFields, log } from "../shared/logger";

/** Pause before a background retry. */
const RETRY_PAUSE_MS = 50;

/**
 * One Upstash client tuned for a kind of call. `request`: on a request's path before its
 * answer (reads, the refill after a miss, the caller's own eviction), where a slow Redis
 * must cost a bounded few hundred milliseconds and then D1 answers: short timeout, one
 * attempt. `background`: crons, Durable Objects (often far from the Upstash region) and
 * work after the answer (ranking increments, evictions that keep the cache honest), where
 * nobody waits and a lost write costs a stale cache: a longer timeout and a retry.
 * Timeouts and retries come from the config (REDIS_REQUEST_TIMEOUT_MS, default 250;
 * REDIS_BACKGROUND_TIMEOUT_MS, default 1000; REDIS_BACKGROUND_RETRIES, default 1).
 */
export interface RedisLane {
  readonly name: "request" | "background";
  readonly redis: Redis;
  /** Calls made before giving up (1 + retries). */
  readonly attempts: number;
}

export interface RedisLanes {
  request: RedisLane;
  background: RedisLane;
}

/** The Upstash clients, or undefined when Redis is not configured. */
export function createRedis(config: Config): RedisLanes | undefined {
  if (!config.redis) return undefined;
  const { url, token } = config.redis;
  const { requestMs, backgroundMs, backgroundRetries } = config.redisTimeouts;
  const client = (timeoutMs: number) =>
    new Redis({
      url,
      token,
      // Exactly one HTTP call per attempt (the client's own retry covers network errors only, under one deadline): tryRedis retries.
      retry: { retries: 0 },
      enableAutoPipelining: false,
      // A signal *function* makes an abort throw (a static signal would resolve to "Aborted"); each call arms its own.
      signal: () => AbortSignal.timeout(timeoutMs),
    });
  return {
    request: { name: "request", redis: client(requestMs), attempts: 1 },
    background: { name: "background", redis: client(backgroundMs), attempts: 1 + backgroundRetries },
  };
}

/**
 * Runs a Redis operation as best effort on `lane`: each attempt under the lane's timeout,
 * up to its attempts; when all fail, logs a warning and returns undefined (for reads,
 * "go to D1"). Every operation here is safe to repeat (idempotent scripts, SET, DEL, and
 * generation INCRs whose only meaning is "changed").
 */
export async function tryRedis<T>(lane: RedisLane, op: string, fn: (redis: Redis) => Promise<T>): Promise<T | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(lane.redis);
    } catch (err) {
      if (attempt < lane.attempts) {
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
        continue;
      }
      log("warn", "redis call failed; falling back", { op, lane: lane.name, attempts: attempt, ...errorFields(err), stack: undefined });
      return undefined;
    }
  }
}
