import { createRoute, z } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { intQuery } from "../shared/validation";
import { decodeCursor, encodeCursor } from "../shared/cursor";
import { toIso } from "../shared/clock";
import { COUPON_AVAILABILITY_STATUSES, couponAvailability } from "../coupons/coupon.rules";

const security = [{ adminBearer: [] }];

/** Rows per page by default and at most. */
const ADMIN_PAGE_DEFAULT = 50;
const ADMIN_PAGE_MAX = 100;

const PageQuerySchema = z.strictObject({
  limit: intQuery(1, ADMIN_PAGE_MAX, ADMIN_PAGE_DEFAULT),
  cursor: z.string().max(64).optional().openapi({ description: "`nextCursor` of the previous page" }),
});

const nextCursor = z.string().nullable().openapi({ description: "Pass as `cursor` for the next (older) page; null on the last page" });

const AdminCouponSchema = z
  .object({
    couponId: z.number().int(),
    name: z.string(),
    discountType: z.enum(["RATE", "AMOUNT"]),
    discountValue: z.number().int(),
    quantity: z.number().int(),
    issued: z
      .number()
      .int()
      .openapi({ description: "D1's count (each win is written there before it is answered); GET /coupons/{couponId} asks the objects" }),
    remaining: z.number().int().min(0),
    startsAt: z.string().openapi({ format: "date-time" }),
    endsAt: z.string().openapi({ format: "date-time" }),
    status: z.enum(COUPON_AVAILABILITY_STATUSES),
    shards: z.number().int(),
    createdAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("AdminCoupon");

const AdminProductSchema = z
  .object({
    productId: z.number().int(),
    name: z.string(),
    price: z.number().int(),
    stock: z.number().int().openapi({ description: "Available units as the stock objects last projected them (the sum over its shards)" }),
    stockShards: z.number().int(),
    createdAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("AdminProduct");

const couponsRoute = createRoute({
  method: "get",
  path: "/coupons",
  tags: ["admin"],
  security,
  summary: "Every coupon, newest first, with quantity, issued, remaining and status (cursor paged, limit 1..100, default 50)",
  request: { query: PageQuerySchema },
  responses: {
    ...okResponse(200, "A page of coupons", z.object({ coupons: z.array(AdminCouponSchema), nextCursor })),
    ...errorResponses(400, 401, 403),
  },
});

const productsRoute = createRoute({
  method: "get",
  path: "/products",
  tags: ["admin"],
  security,
  summary: "Every product, newest first, with price, stock and stock shards (cursor paged, limit 1..100, default 50)",
  request: { query: PageQuerySchema },
  responses: {
    ...okResponse(200, "A page of products", z.object({ products: z.array(AdminProductSchema), nextCursor })),
    ...errorResponses(400, 401, 403),
  },
});

/** Each list's cursors carry their own tag: another list's cursor is a 400. */
const COUPONS_TAG = "ac";
const PRODUCTS_TAG = "ap";

/** The id a newest-first page starts below (no cursor: from the newest). */
const beforeIdOf = (cursor: string | undefined, tag: string) => decodeCursor(cursor, tag) || Number.MAX_SAFE_INTEGER;

/** A page of `limit` from `rows` read with one extra row, and the cursor of the next one. */
function paged<R extends { id: number }>(rows: R[], limit: number, tag: string): { rows: R[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { rows: page, nextCursor: rows.length > limit && last ? encodeCursor(last.id, tag) : null };
}

/** `/api/v1/admin/coupons` and `/api/v1/admin/products` lists (the operator console's tables). */
export const adminListRoutes = createRouter<AppEnv>()
  .openapi(couponsRoute, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    const now = c.var.services.clock();
    const { rows, nextCursor } = paged(
      await c.var.services.adminLists.coupons(beforeIdOf(cursor, COUPONS_TAG), limit + 1),
      limit,
      COUPONS_TAG,
    );
    return ok(c, {
      coupons: rows.map((r) => {
        const { remaining, status } = couponAvailability(
          { quantity: r.quantity, issued: r.issuedQuantity, startsAt: r.startsAt, endsAt: r.endsAt },
          now,
        );
        return {
          couponId: r.id,
          name: r.name,
          discountType: r.discountType,
          discountValue: r.discountValue,
          quantity: r.quantity,
          issued: r.issuedQuantity,
          remaining,
          startsAt: toIso(r.startsAt),
          endsAt: toIso(r.endsAt),
          status,
          shards: r.shards,
          createdAt: toIso(r.createdAt),
        };
      }),
      nextCursor,
    });
  })
  .openapi(productsRoute, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    const { rows, nextCursor } = paged(
      await c.var.services.adminLists.products(beforeIdOf(cursor, PRODUCTS_TAG), limit + 1),
      limit,
      PRODUCTS_TAG,
    );
    return ok(c, {
      products: rows.map((r) => ({
        productId: r.id,
        name: r.name,
        price: r.price,
        stock: r.stock,
        stockShards: r.stockShards,
        createdAt: toIso(r.createdAt),
      })),
      nextCursor,
    });
  });
