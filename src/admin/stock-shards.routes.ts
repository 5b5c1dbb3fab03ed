import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { ProductIdParamSchema } from "../products/products.schemas";
import { SetStockShardsBodySchema, StockShardsSchema, StockShardsViewSchema } from "./stock-shards.schemas";

const security = [{ adminBearer: [] }];

const setStockShardsRoute = createRoute({
  method: "put",
  path: "/products/{productId}/stock-shards",
  tags: ["admin"],
  security,
  summary: "Raise the number of stock shard objects of a hot product (never lowered: 409 STOCK_SHARDS_CANNOT_DECREASE)",
  request: { params: ProductIdParamSchema, body: jsonBody(SetStockShardsBodySchema) },
  responses: {
    ...okResponse(200, "The shard count now", StockShardsSchema),
    ...errorResponses(400, 401, 403, 404, 409, 413, 415),
  },
});

const viewStockShardsRoute = createRoute({
  method: "get",
  path: "/products/{productId}/stock-shards",
  tags: ["admin"],
  security,
  summary: "Each stock shard's available, held, confirmed and sold units (from the objects) and their sum",
  request: { params: ProductIdParamSchema },
  responses: {
    ...okResponse(200, "Per-shard stock", StockShardsViewSchema),
    ...errorResponses(400, 401, 403, 404),
  },
});

/** `/api/v1/admin/products/{productId}/stock-shards` (behind the admin token, app.ts). */
export const stockShardRoutes = createRouter<AppEnv>()
  .openapi(setStockShardsRoute, async (c) => {
    const { productId } = c.req.valid("param");
    const { stockShards } = c.req.valid("json");
    return ok(c, await c.var.services.stockShards.raise(productId, stockShards));
  })
  .openapi(viewStockShardsRoute, async (c) => {
    const { productId } = c.req.valid("param");
    return ok(c, await c.var.services.stockShards.view(productId));
  });
