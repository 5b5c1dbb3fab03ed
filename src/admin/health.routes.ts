import { createRoute, z } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { AppError } from "../shared/errors";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import { errorFields, log } from "../shared/logger";
import type { AppEnv } from "../app-env";
import { checkHealth, OUTBOX_BEHIND_AT } from "./health";

const Probe = (what: string) =>
  z
    .object({
      status: z
        .enum(["ok", "fail", "off"])
        .openapi({ description: `${what}: ok, fail (error or no answer in time; the cause is in the log) or off (not configured)` }),
      ms: z.number().int().min(0),
    })
    .openapi({ description: what });

export const HealthSchema = z
  .object({
    status: z
      .enum(["ok", "degraded"])
      .openapi({ description: "degraded: Redis failed, the outbox is behind or dead letters wait (the API still serves correctly)" }),
    checks: z.object({
      d1: Probe("D1 primary (the backlog counts below, one batch)"),
      couponObject: Probe("One CouponIssuer Durable Object (a storage-only call)"),
      redis: Probe("Upstash Redis PING"),
      outbox: z.object({
        status: z.enum(["ok", "behind", "unknown"]),
        pending: z
          .number()
          .int()
          .min(0)
          .max(OUTBOX_BEHIND_AT)
          .nullable()
          .openapi({ description: `Unpublished outbox rows, counted up to ${OUTBOX_BEHIND_AT} (behind from there)` }),
      }),
      deadLetters: z.object({
        status: z.enum(["ok", "waiting", "unknown"]),
        waiting: z
          .number()
          .int()
          .min(0)
          .max(OUTBOX_BEHIND_AT)
          .nullable()
          .openapi({ description: `Dead letters not replayed yet, counted up to ${OUTBOX_BEHIND_AT}` }),
      }),
    }),
  })
  .openapi("AdminHealth");

const healthRoute = createRoute({
  method: "get",
  path: "/health",
  tags: ["admin"],
  security: [{ adminBearer: [] }],
  summary:
    "Dependency check for uptime monitors: D1, a CouponIssuer object, Redis (if configured), outbox backlog, dead letters; one round trip",
  responses: {
    ...okResponse(200, "Every hard dependency answered; `degraded` when a soft one did not", HealthSchema),
    // 503 (a hard dependency failed) is declared with the object-backed routes' (src/openapi.ts).
    ...errorResponses(401, 403),
  },
});

/**
 * `/api/v1/admin/health` (behind the admin token, app.ts). 503 SERVICE_UNAVAILABLE names the
 * failed hard checks; the causes go to the log, never to the answer.
 */
export const healthRoutes = createRouter<AppEnv>().openapi(healthRoute, async (c) => {
  const report = await checkHealth(c.var.services.health, {
    onError: (check, err) =>
      log("warn", "health check failed", { requestId: c.var.requestId, check, ...errorFields(err), stack: undefined }),
  });
  if (report.status === "down") {
    const failed = (["d1", "couponObject"] as const).filter((k) => report.checks[k].status === "fail");
    throw new AppError("SERVICE_UNAVAILABLE", `필수 의존성 점검 실패: ${failed.join(", ")}`, { "Retry-After": "5" });
  }
  return ok(c, { status: report.status, checks: report.checks });
});
