import type { MiddlewareHandler } from "hono";
import { verify } from "hono/jwt";
import { AppError } from "./errors";
import { isAdminPath, isPublicRead, requestUserIds } from "./request-user";

/** The only algorithm accepted: a token whose header says anything else (none, HS512, RS256) is refused. */
export const JWT_ALG = "HS256";

const CHALLENGE = { "WWW-Authenticate": 'Bearer realm="api"' };
const INVALID_TOKEN = { "WWW-Authenticate": 'Bearer realm="api", error="invalid_token"' };

/** Answer to every user route of a deployment that lacks JWT_SECRET: the operator fixes it, then clients retry. */
const MISCONFIGURED_RETRY = { "Retry-After": "60" };

/**
 * User identity for `/api/v1` (docs/ARCHITECTURE.md §4, §5). Every route except admin and public
 * catalogue reads (GET/HEAD of /products, /products/{id}, /products/top, /products/best
 * and /coupons/{couponId}: `isPublicRead`) takes a user's identity. With `JWT_SECRET`
 * unset, those routes are open in local development (ENVIRONMENT = "development") and
 * answer 503 MISCONFIGURED anywhere else: a deployment that forgot the secret is closed,
 * never open. With it set, each needs `Authorization: Bearer <HS256 JWT>` whose `sub` equals
 * every `userId` the request names (query and JSON body):
 * - no / malformed / badly signed / expired token, or no `sub`/`exp`: 401 UNAUTHORIZED;
 * - a valid token for another user, or no `userId` at all: 403 FORBIDDEN (deny by default,
 *   so a route added later without a `userId` is closed rather than open).
 * The token is checked before the body is read; malformed JSON is still 400.
 * Nothing here logs the header or the token (hono's JWT errors carry the token in
 * their message, so they are swallowed into a fixed AppError).
 */
/** What the identity middleware reads from the Hono context. */
export interface IdentityEnv {
  Variables: { config: { jwtSecret: string | undefined; missingSecrets: readonly string[] } };
}

export const requireUserIdentity: MiddlewareHandler<IdentityEnv> = async (c, next) => {
  const { jwtSecret: secret, missingSecrets } = c.var.config;
  const path = c.req.path;
  if (isAdminPath(path) || isPublicRead(c.req.method, path)) return next();
  if (!secret) {
    // Logged once per isolate when the config was read (src/config.ts), not per refusal.
    if (missingSecrets.includes("JWT_SECRET")) throw new AppError("MISCONFIGURED", undefined, MISCONFIGURED_RETRY);
    return next();
  }

  const header = c.req.header("authorization");
  const match = header ? /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*) *$/.exec(header) : null;
  if (!match) throw new AppError("UNAUTHORIZED", "Authorization: Bearer <JWT> 헤더가 필요합니다.", CHALLENGE);

  let sub: unknown;
  try {
    const payload = await verify(match[1]!, secret, JWT_ALG);
    if (typeof payload.exp !== "number") throw new Error("exp missing");
    sub = payload.sub;
  } catch {
    throw new AppError("UNAUTHORIZED", "토큰이 유효하지 않거나 만료되었습니다.", INVALID_TOKEN);
  }
  if (typeof sub !== "string" || sub === "") {
    throw new AppError("UNAUTHORIZED", "토큰에 사용자(sub)가 없습니다.", INVALID_TOKEN);
  }

  const ids = await requestUserIds(c);
  if (ids.length === 0 || ids.some((id) => id !== sub)) {
    throw new AppError("FORBIDDEN", "요청의 userId 가 토큰의 사용자와 일치하지 않습니다.");
  }
  await next();
};
