import { createRoute, z } from "@hono/zod-openapi";
import { AppError } from "../shared/errors";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { ProductDetailSchema, ProductIdParamSchema, ProductPageQuerySchema, ProductPageSchema } from "./products.schemas";

const listRoute = createRoute({
  method: "get",
  path: "/",
  tags: ["products"],
  security: [],
  summary: "The catalogue, zero-based pages ordered by id",
  request: { query: ProductPageQuerySchema },
  responses: {
    ...okResponse(200, "A page of products", ProductPageSchema),
    ...errorResponses(400),
  },
});

const detailRoute = createRoute({
  method: "get",
  path: "/{productId}",
  tags: ["products"],
  security: [],
  summary: "One product",
  request: { params: ProductIdParamSchema, query: z.strictObject({}) },
  responses: {
    ...okResponse(200, "The product", ProductDetailSchema),
    ...errorResponses(400, 404),
  },
});

/** `/api/v1/products` (ranking routes are mounted before these so `/top` and `/best` win over `/{productId}`). */
export const productsRoutes = createRouter<AppEnv>()
  .openapi(listRoute, async (c) => {
    const { page, size } = c.req.valid("query");
    const { rows, total } = await c.var.services.productsRepo.page(page, size);
    return ok(c, {
      products: rows.map((p) => ({ productId: p.id, productName: p.name, price: p.price, stock: p.stock })),
      page,
      size,
      total,
    });
  })
  .openapi(detailRoute, async (c) => {
    const { productId } = c.req.valid("param");
    const p = await c.var.services.productsRepo.findById(productId);
    if (!p) throw new AppError("PRODUCT_NOT_FOUND");
    return ok(c, { productId: p.id, productName: p.name, description: p.description, price: p.price, stock: p.stock });
  });
