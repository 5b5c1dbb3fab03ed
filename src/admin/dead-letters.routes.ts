import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../shared/errors";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { idParamSchema, intQuery } from "../shared/validation";
import { toIso, toIsoOrNull } from "../shared/clock";

const security = [{ adminBearer: [] }];

const DeadLetterSchema = z
  .object({
    id: z.number().int(),
    eventId: z.string(),
    type: z.string(),
    attempts: z.number().int(),
    createdAt: z.string(),
    replayedAt: z.string().nullable(),
    payload: z.unknown(),
  })
  .openapi("DeadLetter");

const listRoute = createRoute({
  method: "get",
  path: "/dead-letters",
  tags: ["admin"],
  security,
  summary: "Events that exhausted their delivery retries",
  request: { query: z.strictObject({ afterId: intQuery(0, Number.MAX_SAFE_INTEGER, 0), limit: intQuery(1, 100, 50) }) },
  responses: {
    ...okResponse(200, "Dead letters", z.object({ deadLetters: z.array(DeadLetterSchema) })),
    ...errorResponses(400, 401, 403),
  },
});

const replayRoute = createRoute({
  method: "post",
  path: "/dead-letters/{deadLetterId}/replay",
  tags: ["admin"],
  security,
  summary: "Send a dead letter's event to the events queue again (delivery stays idempotent on the event id)",
  request: { params: z.strictObject({ deadLetterId: idParamSchema.openapi({ type: "integer", param: { name: "deadLetterId", in: "path" } }) }) },
  responses: {
    ...okResponse(200, "Replayed", DeadLetterSchema),
    ...errorResponses(400, 401, 403, 404),
  },
});

/** `/api/v1/admin/dead-letters` */
export const deadLetterRoutes = createRouter<AppEnv>()
  .openapi(listRoute, async (c) => {
    const { afterId, limit } = c.req.valid("query");
    const rows = await c.var.services.events.deadLetters.list(afterId, limit);
    return ok(c, {
      deadLetters: rows.map((r) => ({
        id: r.id,
        eventId: r.eventId,
        type: r.type,
        attempts: r.attempts,
        createdAt: toIso(r.createdAt),
        replayedAt: toIsoOrNull(r.replayedAt),
        payload: JSON.parse(r.payload) as unknown,
      })),
    });
  })
  .openapi(replayRoute, async (c) => {
    const { deadLetterId } = c.req.valid("param");
    const { deadLetters, replay } = c.var.services.events;
    const row = await deadLetters.find(deadLetterId);
    if (!row) throw new AppError("DEAD_LETTER_NOT_FOUND");
    const payload = JSON.parse(row.payload) as unknown;
    await replay(payload);
    const at = c.var.services.clock();
    await deadLetters.markReplayed(row.id, at);
    return ok(c, {
      id: row.id,
      eventId: row.eventId,
      type: row.type,
      attempts: row.attempts,
      createdAt: toIso(row.createdAt),
      replayedAt: toIso(at),
      payload,
    });
  });
