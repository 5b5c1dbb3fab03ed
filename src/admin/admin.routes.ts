import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import {
  AdjustStockBodySchema,
  CouponQuantitySchema,
  CouponShardsSchema,
  CouponShardsViewSchema,
  SetCouponShardsBodySchema,
  CreateCouponBodySchema,
  CreatedIdSchema,
  CreateProductBodySchema,
  CreateUserBodySchema,
  SetCouponQuantityBodySchema,
  StockLevelSchema,
} from "./admin.schemas";
import { CouponIdParamSchema } from "../coupons/coupons.schemas";
import { ProductIdParamSchema } from "../products/products.schemas";
import { DEFAULT_VALID_DAYS } from "../coupons/coupon.rules";

const security = [{ adminBearer: [] }];

const createUserRoute = createRoute({
  method: "post",
  path: "/users",
  tags: ["admin"],
  security,
  summary: "Create a user with an optional initial balance",
  request: { body: jsonBody(CreateUserBodySchema) },
  responses: {
    ...okResponse(201, "Created", CreatedIdSchema("userId")),
    ...errorResponses(400, 401, 403, 413, 415),
  },
});

const createProductRoute = createRoute({
  method: "post",
  path: "/products",
  tags: ["admin"],
  security,
  summary: "Create a product (optionally split over `stockShards` stock objects)",
  request: { body: jsonBody(CreateProductBodySchema) },
  responses: {
    ...okResponse(201, "Created", CreatedIdSchema("productId")),
    ...errorResponses(400, 401, 403, 413, 415),
  },
});

const createCouponRoute = createRoute({
  method: "post",
  path: "/coupons",
  tags: ["admin"],
  security,
  summary: "Create a first-come coupon (issuable at once inside its window)",
  request: { body: jsonBody(CreateCouponBodySchema) },
  responses: {
    ...okResponse(201, "Created", CreatedIdSchema("couponId")),
    ...errorResponses(400, 401, 403, 413, 415),
  },
});

const setCouponQuantityRoute = createRoute({
  method: "patch",
  path: "/coupons/{couponId}",
  tags: ["admin"],
  security,
  summary: "Change a coupon's quantity (never below what is already issued)",
  request: { params: CouponIdParamSchema, body: jsonBody(SetCouponQuantityBodySchema) },
  responses: {
    ...okResponse(200, "New quantity", CouponQuantitySchema),
    ...errorResponses(400, 401, 403, 404, 409, 413, 415),
  },
});

const setCouponShardsRoute = createRoute({
  method: "put",
  path: "/coupons/{couponId}/shards",
  tags: ["admin"],
  security,
  summary: 'Raise a coupon\'s shard count (before its window opens, while nothing is issued); docs/SHARDING.md "When and how to shard"',
  request: { params: CouponIdParamSchema, body: jsonBody(SetCouponShardsBodySchema) },
  responses: {
    ...okResponse(200, "Shard count in force", CouponShardsSchema),
    ...errorResponses(400, 401, 403, 404, 409, 413, 415),
  },
});

const couponShardsRoute = createRoute({
  method: "get",
  path: "/coupons/{couponId}/shards",
  tags: ["admin"],
  security,
  summary: "Per-shard units, issuances and open transfers of a coupon",
  request: { params: CouponIdParamSchema },
  responses: {
    ...okResponse(200, "Every shard's state and the sums", CouponShardsViewSchema),
    ...errorResponses(400, 401, 403, 404),
  },
});

const adjustStockRoute = createRoute({
  method: "patch",
  path: "/products/{productId}/stock",
  tags: ["admin"],
  security,
  summary: "Restock (delta > 0) or reduce (delta < 0) through the product's stock DO; never below 0",
  request: { params: ProductIdParamSchema, body: jsonBody(AdjustStockBodySchema) },
  responses: {
    ...okResponse(200, "Available stock after the change", StockLevelSchema),
    ...errorResponses(400, 401, 403, 404, 409, 413, 415),
  },
});

/** `/api/v1/admin`: every route behind the admin bearer token (guarded in app.ts). */
export const adminRoutes = createRouter<AppEnv>()
  .openapi(createUserRoute, async (c) => {
    const body = c.req.valid("json");
    return ok(c, await c.var.services.admin.createUser(body), 201);
  })
  .openapi(createProductRoute, async (c) => {
    const body = c.req.valid("json");
    const productId = await c.var.services.stockShards.createProduct({
      name: body.name,
      description: body.description ?? "",
      price: body.price,
      stock: body.stock,
      stockShards: body.stockShards ?? 1,
    });
    return ok(c, { productId }, 201);
  })
  .openapi(createCouponRoute, async (c) => {
    const body = c.req.valid("json");
    const couponId = await c.var.services.coupons.create({
      name: body.name,
      discountType: body.discountType,
      discountValue: body.discountValue,
      quantity: body.quantity,
      startsAt: Date.parse(body.startsAt),
      endsAt: Date.parse(body.endsAt),
      validDays: body.validDays ?? DEFAULT_VALID_DAYS,
      shards: body.shards ?? 1,
    });
    return ok(c, { couponId }, 201);
  })
  .openapi(setCouponQuantityRoute, async (c) => {
    const { couponId } = c.req.valid("param");
    const { quantity } = c.req.valid("json");
    return ok(c, await c.var.services.coupons.setQuantity(couponId, quantity));
  })
  .openapi(setCouponShardsRoute, async (c) => {
    const { couponId } = c.req.valid("param");
    const { shards } = c.req.valid("json");
    return ok(c, await c.var.services.coupons.setShards(couponId, shards));
  })
  .openapi(couponShardsRoute, async (c) => {
    const { couponId } = c.req.valid("param");
    const view = await c.var.services.coupons.shardStates(couponId);
    return ok(c, {
      ...view,
      perShard: view.perShard.map((s) => ({
        shard: s.shard,
        shards: s.shards,
        held: s.held,
        issued: s.issued,
        free: s.held - s.issued,
        unsynced: s.unsynced,
        openTransfers: s.openTransfers,
        requests: s.requests,
        d1Batches: s.d1Batches,
        d1: s.d1,
      })),
    });
  })
  .openapi(adjustStockRoute, async (c) => {
    const { productId } = c.req.valid("param");
    const { delta } = c.req.valid("json");
    return ok(c, await c.var.services.stockShards.restock(productId, delta));
  });
