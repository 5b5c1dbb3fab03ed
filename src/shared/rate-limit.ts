import type { Context, MiddlewareHandler } from "hono";
import { AppError } from "./errors";
import { errorFields, log } from "./logger";
import type { RateLimitDecision, RateLimiter } from "./rate-limiter.do";
import { isAdminPath, isWrite, requestUserId } from "./request-user";
import { callObject, HopMeter } from "./hops";
import { errorResponse } from "./envelope";

export const RATE_LIMIT_WINDOW_MS = 60_000;

/** What the rate-limit middleware reads from the Hono context (the app's `AppEnv` has it all). */
export interface RateLimitEnv {
  Variables: {
    services: { rateLimiter: RateLimiterClient };
    config: { rateLimitWritesPerMinute: number };
    requestId: string;
    /** The per-IP write limit's decision, started before identity and awaited with the per-user one. */
    ipLimit?: Promise<RateLimitDecision | undefined>;
  };
}

/** Port for counting writes per key; the adapter is one RateLimiter DO per key. */
export interface RateLimiterClient {
  hit(key: string, windowMs: number, limit: number, now: number): Promise<RateLimitDecision>;
}

export function rateLimiterClient(ns: DurableObjectNamespace<RateLimiter>, meter: HopMeter = new HopMeter()): RateLimiterClient {
  return {
    hit: (key, windowMs, limit, now) => callObject(meter, () => ns.get(ns.idFromName(key)).hit(windowMs, limit, now)),
  };
}

/** The client address Cloudflare reports; "unknown" when absent (local tools, tests). */
export function clientIp(c: Context): string {
  return c.req.header("cf-connecting-ip")?.trim() || "unknown";
}

/** Writes (POST/PUT/PATCH under /api/v1, admin excluded) while the limit is on. */
function isLimited(c: Context<RateLimitEnv>): boolean {
  return c.var.config.rateLimitWritesPerMinute > 0 && isWrite(c.req.method) && !isAdminPath(c.req.path);
}

/**
 * Counts one write for `key`. If the counter itself fails, the write goes through
 * (logged): the limiter protects capacity, it must not take the API down with it.
 */
async function hitOrPass(c: Context<RateLimitEnv>, key: string, now: number): Promise<RateLimitDecision | undefined> {
  try {
    return await c.var.services.rateLimiter.hit(key, RATE_LIMIT_WINDOW_MS, c.var.config.rateLimitWritesPerMinute, now);
  } catch (err) {
    log("warn", "rate limiter unavailable; letting the write through", { requestId: c.var.requestId, ...errorFields(err) });
    return undefined;
  }
}

const rateLimited = (d: RateLimitDecision) => new AppError("RATE_LIMITED", undefined, { "Retry-After": String(d.retryAfterSeconds) });

/**
 * Limits writes to `RATE_LIMIT_WRITES_PER_MINUTE` per client IP and fixed minute
 * (0 turns it off). Over the limit: 429 RATE_LIMITED with `Retry-After` (seconds
 * to the next window). It runs before identity, so unauthenticated floods are
 * counted too, but it does not wait: its counter call runs while identity is
 * checked and is awaited together with the per-user one (one round trip for both,
 * docs/ARCHITECTURE.md §8). A request refused before that (401/403/400) is still answered 429
 * when its IP is over the limit.
 */
export const limitWritesByIp = (now: () => number): MiddlewareHandler<RateLimitEnv> => async (c, next) => {
  if (!isLimited(c)) return next();
  const pending = hitOrPass(c, `ip:${clientIp(c)}`, now());
  c.set("ipLimit", pending);
  await next();
  if (c.var.ipLimit === undefined) return; // awaited by limitWritesByUser
  const decision = await pending;
  if (decision && !decision.allowed) {
    const err = rateLimited(decision);
    c.error = undefined;
    c.res = errorResponse(c, err);
  }
};

/**
 * Per acting user (the body/query userId, equal to the JWT sub when identity is
 * on); runs after identity, so nobody can spend another user's budget. Awaits the
 * per-IP decision in the same step.
 */
export const limitWritesByUser = (now: () => number): MiddlewareHandler<RateLimitEnv> => async (c, next) => {
  if (!isLimited(c)) return next();
  const userId = await requestUserId(c);
  const ip = c.var.ipLimit;
  c.set("ipLimit", undefined);
  const [ipDecision, userDecision] = await Promise.all([ip, userId === undefined ? undefined : hitOrPass(c, `user:${userId}`, now())]);
  if (ipDecision && !ipDecision.allowed) throw rateLimited(ipDecision);
  if (userDecision && !userDecision.allowed) throw rateLimited(userDecision);
  await next();
};
