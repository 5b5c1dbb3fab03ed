import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, jsonBody, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import {
  CouponAvailabilitySchema,
  CouponIdParamSchema,
  IssueBodySchema,
  IssuedCouponSchema,
  IssueForCouponBodySchema,
  OwnedCouponsSchema,
  OwnerQuerySchema,
} from "./coupons.schemas";

const issueRoute = createRoute({
  method: "post",
  path: "/issue",
  tags: ["coupons"],
  summary: "Issue a first-come coupon to a user (one per user, while quantity lasts, inside the window)",
  request: { body: jsonBody(IssueBodySchema) },
  responses: {
    ...okResponse(201, "Issued", IssuedCouponSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

const issueForCouponRoute = createRoute({
  method: "post",
  path: "/{couponId}/issue",
  tags: ["coupons"],
  summary: "Issue the coupon in the path to a user",
  request: { params: CouponIdParamSchema, body: jsonBody(IssueForCouponBodySchema) },
  responses: {
    ...okResponse(201, "Issued", IssuedCouponSchema),
    ...errorResponses(400, 404, 409, 413, 415),
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/",
  tags: ["coupons"],
  summary: "A user's coupons with status AVAILABLE, USED or EXPIRED, by user coupon id, a page at a time (limit 1..100, default 100)",
  request: { query: OwnerQuerySchema },
  responses: {
    ...okResponse(200, "Owned coupons", OwnedCouponsSchema),
    ...errorResponses(400, 404),
  },
});

const availabilityRoute = createRoute({
  method: "get",
  path: "/{couponId}",
  tags: ["coupons"],
  // Public like the catalogue: no user, a replica may answer, and the edge keeps it for at most a second.
  security: [],
  summary:
    "A coupon's availability for a sale page: quantity, issued, remaining and UPCOMING/OPEN/SOLD_OUT/ENDED (public; edge-cached for at most 1 s)",
  request: { params: CouponIdParamSchema },
  responses: {
    ...okResponse(200, "The coupon and what is left of it", CouponAvailabilitySchema),
    ...errorResponses(400, 404),
  },
});

/** `/api/v1/coupons` */
export const couponsRoutes = createRouter<AppEnv>()
  .openapi(issueRoute, async (c) => {
    const { userId, couponId } = c.req.valid("json");
    return ok(c, await c.var.services.coupons.issue(userId, couponId, c.var.idempotency?.key), 201);
  })
  .openapi(issueForCouponRoute, async (c) => {
    const { couponId } = c.req.valid("param");
    const { userId } = c.req.valid("json");
    return ok(c, await c.var.services.coupons.issue(userId, couponId, c.var.idempotency?.key), 201);
  })
  .openapi(availabilityRoute, async (c) => {
    const { couponId } = c.req.valid("param");
    return ok(c, await c.var.services.coupons.availability(couponId));
  })
  .openapi(listRoute, async (c) => {
    const { userId, limit, cursor } = c.req.valid("query");
    return ok(c, await c.var.services.coupons.listOwned(userId, { limit, cursor }));
  });
