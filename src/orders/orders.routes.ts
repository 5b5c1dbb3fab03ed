import { createRoute } from "@hono/zod-openapi";
import { envelopeOf, ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody } from "../shared/http";
import {
  CancelOrderBodySchema,
  OrderIdParamSchema,
  OrderSchema,
  PlacedOrderSchema,
  PlaceOrderBodySchema,
  UserIdQuerySchema,
} from "./orders.schemas";

const placeRoute = createRoute({
  method: "post",
  path: "/",
  tags: ["orders"],
  summary: "Place an order (1..50 distinct products, quantity 1..1,000, optional user coupon)",
  request: { body: jsonBody(PlaceOrderBodySchema) },
  responses: {
    201: { description: "Order placed, awaiting payment", content: { "application/json": { schema: envelopeOf(PlacedOrderSchema, 201) } } },
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/{orderId}",
  tags: ["orders"],
  summary: "One of the user's orders with its lines",
  request: { params: OrderIdParamSchema, query: UserIdQuerySchema },
  responses: {
    200: { description: "The order", content: { "application/json": { schema: envelopeOf(OrderSchema) } } },
    ...errorResponses(400, 404),
  },
});

const cancelRoute = createRoute({
  method: "post",
  path: "/{orderId}/cancel",
  tags: ["orders"],
  summary: "Cancel an unpaid order (stock released, coupon restored); repeating returns it",
  request: { params: OrderIdParamSchema, body: jsonBody(CancelOrderBodySchema) },
  responses: {
    200: { description: "The cancelled order", content: { "application/json": { schema: envelopeOf(OrderSchema) } } },
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

/** `/api/v1/orders` */
export const ordersRoutes = createRouter()
  .openapi(placeRoute, async (c) => {
    return ok(c, await c.var.services.orders.placeOrder(c.req.valid("json")), 201);
  })
  .openapi(getRoute, async (c) => {
    const { orderId } = c.req.valid("param");
    const { userId } = c.req.valid("query");
    return ok(c, await c.var.services.orders.getOrder(orderId, userId));
  })
  .openapi(cancelRoute, async (c) => {
    const { orderId } = c.req.valid("param");
    const { userId } = c.req.valid("json");
    return ok(c, await c.var.services.orders.cancelOrder(orderId, userId));
  });
