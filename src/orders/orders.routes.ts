import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import {
  CancelOrderBodySchema,
  OrderIdParamSchema,
  OrderListQuerySchema,
  OrderPageSchema,
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
    ...okResponse(201, "Order placed, awaiting payment", PlacedOrderSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/",
  tags: ["orders"],
  summary: "The user's orders, newest first, a page at a time (limit 1..100, default 20; `cursor` = the previous page's `nextCursor`)",
  request: { query: OrderListQuerySchema },
  responses: {
    ...okResponse(200, "A page of orders with their lines", OrderPageSchema),
    ...errorResponses(400, 404),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/{orderId}",
  tags: ["orders"],
  summary: "One of the user's orders with its lines",
  request: { params: OrderIdParamSchema, query: UserIdQuerySchema },
  responses: {
    ...okResponse(200, "The order", OrderSchema),
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
    ...okResponse(200, "The cancelled order", OrderSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

/** `/api/v1/orders` */
export const ordersRoutes = createRouter<AppEnv>()
  .openapi(placeRoute, async (c) => {
    return ok(c, await c.var.services.orders.placeOrder(c.req.valid("json"), c.var.idempotency), 201);
  })
  .openapi(listRoute, async (c) => {
    const { userId, status, limit, cursor } = c.req.valid("query");
    return ok(c, await c.var.services.orders.listOrders(userId, { status, limit, cursor }));
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
