import type { Context, MiddlewareHandler } from "hono";
import { AppError } from "./errors";
import { errorFields, log } from "./logger";
import { isAdminPath, isWrite, requestUserId } from "./request-user";
import { errorResponse } from "./envelope";

/**
 * The period of both `[[ratelimits]]` bindings (wrangler.toml `simple.period = 60`): the
 * `*_WRITES_PER_MINUTE` vars are per this window, and `RateLimit-Reset` counts to its end.
 */
export const RATE_LIMIT_WINDOW_MS = 60_000;

/**
 * The Workers Rate Limiting bindings (wrangler.toml `[[ratelimits]]`): one counter namespace
 * per kind of key, counted in the Cloudflare location that serves the request (no round trip
 * to a central counter; Miniflare simulates them locally). Undefined when not bound.
 */
export interface WriteLimiters {
  perUser: RateLimit | undefined;
  perIp: RateLimit | undefined;
}

/** What the rate-limit middleware reads from the Hono context (the app's `AppEnv` has it all). */
export interface RateLimitEnv {
  Variables: {
    services: { writeLimiters: WriteLimiters };
    /** The limits the bindings were configured with (0 = that limit is off); see src/config.ts. */
    config: { writeLimits: { perUser: number; perIp: number } };
    requestId: string;
    /** The per-IP decision, started before identity and awaited with the per-user one. */
    ipLimit?: Promise<LimitDecision>;
  };
}

/** One binding's answer, with the configured limit it was held to (for `RateLimit-Limit`). */
interface LimitDecision {
  allowed: boolean;
  limit: number;
}

const ALLOWED: LimitDecision = { allowed: true, limit: 0 };

/** The client address Cloudflare reports; "unknown" when absent (local tools, tests). */
export function clientIp(c: Context): string {
  return c.req.header("cf-connecting-ip")?.trim() || "unknown";
}

/** Writes (POST/PUT/PATCH under /api/v1), admin excluded. */
function isLimitedWrite(c: Context): boolean {
  return isWrite(c.req.method) && !isAdminPath(c.req.path);
}

/** Seconds until the current minute window ends, at least 1 (the binding's windows are the wall clock's minutes). */
export function secondsToWindowEnd(now: number): number {
  const end = Math.floor(now / RATE_LIMIT_WINDOW_MS) * RATE_LIMIT_WINDOW_MS + RATE_LIMIT_WINDOW_MS;
  return Math.max(1, Math.ceil((end - now) / 1000));
}

let missingBindingLogged = false;

/**
 * Asks one binding about `key`. A limit that is on but has no binding, or a binding that
 * throws, lets the write through (logged: once per isolate for the missing binding): the
 * limiter protects capacity, it must not take the API down with it.
 */
async function ask(c: Context<RateLimitEnv>, binding: RateLimit | undefined, limit: number, key: string): Promise<LimitDecision> {
  if (limit === 0) return ALLOWED;
  if (!binding) {
    if (!missingBindingLogged)
      log("error", "write limit configured but its [[ratelimits]] binding is missing; letting writes through", { key: key.split(":")[0] });
    missingBindingLogged = true;
    return ALLOWED;
  }
  try {
    const { success } = await binding.limit({ key });
    return { allowed: success, limit };
  } catch (err) {
    log("warn", "rate limiter unavailable; letting the write through", { requestId: c.var.requestId, ...errorFields(err) });
    return ALLOWED;
  }
}

/**
 * 429 RATE_LIMITED with the IETF draft headers (draft-ietf-httpapi-ratelimit-headers):
 * `RateLimit-Limit` (the limit that refused), `RateLimit-Remaining: 0`, `RateLimit-Reset`
 * and `Retry-After` (seconds to the end of the minute window). The binding only says yes or
 * no, so an allowed write carries none of them: its remaining count is not known.
 */
function rateLimited(d: LimitDecision, now: number): AppError {
  const reset = String(secondsToWindowEnd(now));
  return new AppError("RATE_LIMITED", undefined, {
    "RateLimit-Limit": String(d.limit),
    "RateLimit-Remaining": "0",
    "RateLimit-Reset": reset,
    "Retry-After": reset,
  });
}

/**
 * Limits writes per client IP (`RATE_LIMIT_IP_WRITES_PER_MINUTE`, binding `WRITES_PER_IP`).
 * It runs before identity, so unauthenticated floods are counted too, but it does not
 * wait: its question runs while identity is checked and is awaited together with the
 * per-user one. A request refused before that (401/403/400) is still answered 429 when its
 * IP is over the limit.
 */
export const limitWritesByIp =
  (now: () => number): MiddlewareHandler<RateLimitEnv> =>
  async (c, next) => {
    const limit = c.var.config.writeLimits.perIp;
    if (limit === 0 || !isLimitedWrite(c)) return next();
    const pending = ask(c, c.var.services.writeLimiters.perIp, limit, `ip:${clientIp(c)}`);
    c.set("ipLimit", pending);
    await next();
    if (c.var.ipLimit === undefined) return; // awaited by limitWritesByUser
    const decision = await pending;
    if (!decision.allowed) {
      c.error = undefined;
      c.res = errorResponse(c, rateLimited(decision, now()));
    }
  };

/**
 * Per acting user (`RATE_LIMIT_WRITES_PER_MINUTE`, binding `WRITES_PER_USER`; the body/query
 * userId, equal to the JWT sub when identity is on): runs after identity, so nobody can spend
 * another user's budget. Awaits the per-IP decision in the same step.
 *
 * Approximate by design: no quota of this product needs an exact per-minute count. The exact
 * limits (one coupon per user, a coupon's quantity, stock, the balance and charge caps) are
 * enforced by the CouponIssuer and ProductStock objects and D1 constraints; this one only
 * spreads capacity fairly during a sale.
 */
export const limitWritesByUser =
  (now: () => number): MiddlewareHandler<RateLimitEnv> =>
  async (c, next) => {
    const ip = c.var.ipLimit;
    const limit = c.var.config.writeLimits.perUser;
    if (ip === undefined && (limit === 0 || !isLimitedWrite(c))) return next();
    c.set("ipLimit", undefined);
    const userId = limit === 0 || !isLimitedWrite(c) ? undefined : await requestUserId(c);
    const [ipDecision, userDecision] = await Promise.all([
      ip ?? ALLOWED,
      userId === undefined ? ALLOWED : ask(c, c.var.services.writeLimiters.perUser, limit, `user:${userId}`),
    ]);
    if (!ipDecision.allowed) throw rateLimited(ipDecision, now());
    if (!userDecision.allowed) throw rateLimited(userDecision, now());
    await next();
  };
