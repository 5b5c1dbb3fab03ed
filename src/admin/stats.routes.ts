import { createRoute, z } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { BACKLOG_COUNT_CAP } from "./backlog.repo";

const security = [{ adminBearer: [] }];

const capped = (what: string) =>
  z
    .number()
    .int()
    .min(0)
    .max(BACKLOG_COUNT_CAP)
    .openapi({ description: `${what}; counted up to ${BACKLOG_COUNT_CAP} (that value means "at least")` });

export const AdminStatsSchema = z
  .object({
    outboxPending: capped("Outbox rows not yet published to the events transport"),
    deadLettersWaiting: capped("Dead letters not replayed yet"),
    countCap: z.number().int().openapi({ example: BACKLOG_COUNT_CAP }),
  })
  .openapi("AdminStats");

const statsRoute = createRoute({
  method: "get",
  path: "/stats",
  tags: ["admin"],
  security,
  summary: "The event backlog: pending outbox rows and dead letters awaiting replay (bounded index ranges; the operator console polls it)",
  responses: {
    ...okResponse(200, "Backlog counts", AdminStatsSchema),
    ...errorResponses(401, 403),
  },
});

/** `/api/v1/admin/stats` (behind the admin token, app.ts). */
export const statsRoutes = createRouter<AppEnv>().openapi(statsRoute, async (c) => {
  const backlog = await c.var.services.events.backlog.read();
  return ok(c, { ...backlog, countCap: BACKLOG_COUNT_CAP });
});
