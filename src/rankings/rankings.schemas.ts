import { z } from "@hono/zod-openapi";
import { intQuery } from "../shared/validation";

export const TopQuerySchema = z.strictObject({ size: intQuery(1, 100, 10) });
export const BestQuerySchema = z.strictObject({});

const RankedProductSchema = z
  .object({
    productId: z.number().int(),
    productName: z.string(),
    price: z.number().int(),
    stock: z.number().int(),
    sales: z.number().int(),
  })
  .openapi("RankedProduct");

export const TopSchema = z
  .object({ date: z.string().openapi({ example: "2026-11-26" }), products: z.array(RankedProductSchema) })
  .openapi("DailyRanking");

export const BestSchema = z
  .object({
    bestSellers: z.array(RankedProductSchema),
    from: z.string().openapi({ example: "2026-11-23" }),
    to: z.string().openapi({ example: "2026-11-25" }),
  })
  .openapi("BestSellers");
