import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { AppError } from "../shared/errors";
import type { AppEnv } from "../app-env";

/**
 * Admin routes need `Authorization: Bearer <ADMIN_TOKEN>`. No header: 401.
 * A wrong token: 403 (compared in constant time). No ADMIN_TOKEN configured:
 * in local development the admin API is off (every admin call 401/403); in a
 * deployed environment it is a misconfiguration and every admin call is 503
 * MISCONFIGURED, header or not, like the user routes without JWT_SECRET.
 */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const expected = c.var.config.adminToken;
  // Logged once per isolate when the config was read (src/config.ts), not per refusal.
  if (c.var.config.missingSecrets.includes("ADMIN_TOKEN")) throw new AppError("MISCONFIGURED", undefined, { "Retry-After": "60" });
  const header = c.req.header("authorization");
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match) {
    throw new AppError("UNAUTHORIZED", "관리자 토큰(Authorization: Bearer)이 필요합니다.", {
      "WWW-Authenticate": 'Bearer realm="admin"',
    });
  }
  if (!expected) throw new AppError("FORBIDDEN", "관리자 API가 비활성화되어 있습니다. (ADMIN_TOKEN 미설정)");
  if (!(await timingSafeEqual(match[1]!, expected))) throw new AppError("FORBIDDEN", "관리자 토큰이 올바르지 않습니다.");
  await next();
};
