import type { Context, MiddlewareHandler } from "hono";
import { AppError } from "./errors";
import type { AppEnv } from "./http";
import { errorFields, log } from "./logger";
import type { RateLimitDecision, RateLimiter } from "./rate-limiter.do";
import { isAdminPath, isWrite, requestUserId } from "./request-user";

export const RATE_LIMIT_WINDOW_MS = 60_000;

/** Port for counting writes per key; the adapter is one RateLimiter DO per key. */
export interface RateLimiterClient {
  hit(key: string, windowMs: number, limit: number, now: number): Promise<RateLimitDecision>;
}

export function rateLimiterClient(ns: DurableObjectNamespace<RateLimiter>): RateLimiterClient {
  return {
    hit: (key, windowMs, limit, now) => ns.get(ns.idFromName(key)).hit(windowMs, limit, now),
  };
}

/** The client address Cloudflare reports; "unknown" when absent (local tools, tests). */
export function clientIp(c: Context): string {
  return c.req.header("cf-connecting-ip")?.trim() || "unknown";
}

type KeyOf = (c: Context<AppEnv>) => Promise<string | undefined>;

/**
 * Limits writes (POST/PUT/PATCH under /api/v1, admin excluded) to
 * `RATE_LIMIT_WRITES_PER_MINUTE` per key and fixed minute; 0 turns it off.
 * Over the limit: 429 RATE_LIMITED with `Retry-After` (seconds to the next window).
 * If the counter itself fails, the write goes through (logged): the limiter protects
 * capacity, it must not take the API down with it.
 */
function limitWrites(keyOf: KeyOf, now: () => number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limit = c.var.config.rateLimitWritesPerMinute;
    if (limit === 0 || !isWrite(c.req.method) || isAdminPath(c.req.path)) return next();
    const key = await keyOf(c);
    if (key === undefined) return next();
    let decision: RateLimitDecision;
    try {
      decision = await c.var.services.rateLimiter.hit(key, RATE_LIMIT_WINDOW_MS, limit, now());
    } catch (err) {
      log("warn", "rate limiter unavailable; letting the write through", { requestId: c.var.requestId, ...errorFields(err) });
      return next();
    }
    if (!decision.allowed) {
      throw new AppError("RATE_LIMITED", undefined, { "Retry-After": String(decision.retryAfterSeconds) });
    }
    await next();
  };
}

/** Per client IP; runs before identity, so unauthenticated floods are limited too. */
export const limitWritesByIp = (now: () => number) => limitWrites(async (c) => `ip:${clientIp(c)}`, now);

/** Per acting user (the body/query userId, equal to the JWT sub when identity is on); runs after identity. */
export const limitWritesByUser = (now: () => number) =>
  limitWrites(async (c) => {
    const userId = await requestUserId(c);
    return userId === undefined ? undefined : `user:${userId}`;
  }, now);
