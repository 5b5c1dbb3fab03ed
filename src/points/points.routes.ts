import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { BalanceSchema, ChargeBodySchema, HistoryQuerySchema, HistorySchema, UserIdQuerySchema } from "./points.schemas";

const chargeRoute = createRoute({
  method: "post",
  path: "/charge",
  tags: ["points"],
  summary: "Charge points (1..1,000,000 per request; balance at most 5,000,000)",
  request: { body: jsonBody(ChargeBodySchema) },
  responses: {
    ...okResponse(200, "New balance", BalanceSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

const balanceRoute = createRoute({
  method: "get",
  path: "/",
  tags: ["points"],
  summary: "A user's point balance",
  request: { query: UserIdQuerySchema },
  responses: {
    ...okResponse(200, "Balance", BalanceSchema),
    ...errorResponses(400, 404),
  },
});

const historyRoute = createRoute({
  method: "get",
  path: "/history",
  tags: ["points"],
  summary: "A user's point history, oldest first, keyset-paginated",
  request: { query: HistoryQuerySchema },
  responses: {
    ...okResponse(200, "History page", HistorySchema),
    ...errorResponses(400, 404),
  },
});

/** `/api/v1/points` */
export const pointsRoutes = createRouter<AppEnv>()
  .openapi(chargeRoute, async (c) => {
    const { userId, amount } = c.req.valid("json");
    return ok(c, await c.var.services.points.charge(userId, amount, c.var.idempotency));
  })
  .openapi(balanceRoute, async (c) => {
    const { userId } = c.req.valid("query");
    return ok(c, await c.var.services.points.balance(userId));
  })
  .openapi(historyRoute, async (c) => {
    const { userId, limit, cursor } = c.req.valid("query");
    return ok(c, await c.var.services.points.history(userId, limit, cursor));
  });
