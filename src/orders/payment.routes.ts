import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { PaymentReceiptSchema, PayOrderBodySchema } from "./orders.schemas";

const payRoute = createRoute({
  method: "post",
  path: "/use",
  tags: ["points"],
  summary: "Pay an unpaid, unexpired order from the point balance (once)",
  request: { body: jsonBody(PayOrderBodySchema) },
  responses: {
    ...okResponse(200, "Paid", PaymentReceiptSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

/** `POST /api/v1/points/use`, mounted beside the points routes. */
export const paymentRoutes = createRouter<AppEnv>().openapi(payRoute, async (c) => {
  const { userId, orderId } = c.req.valid("json");
  return ok(c, await c.var.services.payments.payOrder(userId, orderId, c.var.idempotency));
});
