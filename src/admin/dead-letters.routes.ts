import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../shared/errors";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { idParamSchema, intQuery } from "../shared/validation";
import { toIso, toIsoOrNull } from "../shared/clock";
import { decodeCursor, encodeCursor } from "../shared/cursor";

/** Dead-letter cursors carry their own tag: another list's cursor is a 400 here. */
const DEAD_LETTER_CURSOR_TAG = "dl";

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
  request: {
    query: z.strictObject({
      cursor: z.string().max(64).optional().openapi({ description: "`nextCursor` of the previous page" }),
      afterId: z
        .string()
        .regex(/^(0|[1-9][0-9]{0,15})$/, "must be a non-negative integer")
        .transform(Number)
        .refine((n) => Number.isSafeInteger(n), "must be a safe integer")
        .optional()
        .openapi({
          type: "integer",
          minimum: 0,
          param: {
            deprecated: true,
            description: "Deprecated (removed in the next release): use `cursor`. The id after which the page starts.",
          },
        }),
      limit: intQuery(1, 100, 50),
    }),
  },
  responses: {
    ...okResponse(
      200,
      "Dead letters, oldest first",
      z.object({
        deadLetters: z.array(DeadLetterSchema),
        nextCursor: z.string().nullable().openapi({ description: "Pass as `cursor` for the next page; null on the last page" }),
      }),
    ),
    ...errorResponses(400, 401, 403),
  },
});

const replayRoute = createRoute({
  method: "post",
  path: "/dead-letters/{deadLetterId}/replay",
  tags: ["admin"],
  security,
  summary: "Send a dead letter's event to the events queue again (delivery stays idempotent on the event id)",
  request: {
    params: z.strictObject({ deadLetterId: idParamSchema.openapi({ type: "integer", param: { name: "deadLetterId", in: "path" } }) }),
  },
  responses: {
    ...okResponse(200, "Replayed", DeadLetterSchema),
    ...errorResponses(400, 401, 403, 404),
  },
});

/** `/api/v1/admin/dead-letters` */
export const deadLetterRoutes = createRouter<AppEnv>()
  .openapi(listRoute, async (c) => {
    const { cursor, afterId, limit } = c.req.valid("query");
    if (cursor !== undefined && afterId !== undefined)
      throw new AppError("VALIDATION_FAILED", "cursor, afterId: give one (afterId is deprecated)");
    const after = afterId ?? decodeCursor(cursor, DEAD_LETTER_CURSOR_TAG);
    // One row more than the page, to know whether another follows.
    const read = await c.var.services.events.deadLetters.list(after, limit + 1);
    const rows = read.slice(0, limit);
    const last = rows[rows.length - 1];
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
      nextCursor: read.length > limit && last ? encodeCursor(last.id, DEAD_LETTER_CURSOR_TAG) : null,
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
