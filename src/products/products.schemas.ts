import { z } from "@hono/zod-openapi";
import { idParamSchema, intQuery } from "../shared/validation";

export const ProductPageQuerySchema = z.strictObject({
  page: intQuery(0, 1_000_000, 0),
  size: intQuery(1, 100, 10),
});

export const ProductIdParamSchema = z.strictObject({
  productId: idParamSchema.openapi({ type: "integer", example: 1, param: { name: "productId", in: "path" } }),
});

export const ProductSummarySchema = z
  .object({
    productId: z.number().int(),
    productName: z.string(),
    price: z.number().int(),
    stock: z.number().int(),
  })
  .openapi("ProductSummary");

export const ProductPageSchema = z
  .object({
    products: z.array(ProductSummarySchema),
    page: z.number().int(),
    size: z.number().int(),
    total: z.number().int(),
  })
  .openapi("ProductPage");

export const ProductDetailSchema = z
  .object({
    productId: z.number().int(),
    productName: z.string(),
    description: z.string(),
    price: z.number().int(),
    stock: z.number().int(),
  })
  .openapi("ProductDetail");
