import { z } from "@hono/zod-openapi";
import { MAX_SHARDS } from "../sharding/routing";
import { D1CostSchema } from "./admin.schemas";

export const SetStockShardsBodySchema = z
  .strictObject({
    stockShards: z
      .number()
      .int()
      .min(1)
      .max(MAX_SHARDS)
      .openapi({ example: 8, description: `The new stock shard count (1..${MAX_SHARDS}); never below the current one` }),
  })
  .openapi("SetStockShardsRequest");

export const StockShardsSchema = z.object({ productId: z.number().int(), stockShards: z.number().int() }).openapi("StockShards");

const units = {
  available: z.number().int(),
  held: z.number().int(),
  confirmed: z.number().int(),
  sold: z.number().int(),
};

export const StockShardsViewSchema = z
  .object({
    productId: z.number().int(),
    stockShards: z.number().int(),
    shards: z.array(
      z.object({
        shard: z.number().int(),
        ...units,
        projected: z
          .number()
          .int()
          .nullable()
          .openapi({ description: "The shard's row in D1 (written behind the object); null before its first write" }),
        openTransfers: z
          .number()
          .int()
          .openapi({ description: "Transfers the shard asked its siblings for and has not closed (units possibly in flight to it)" }),
        requests: z.number().int().openapi({
          description: "Reserve calls the shard's current incarnation answered (in memory: a load indicator, 0 again after a restart)",
        }),
        d1Batches: z.number().int().openapi({
          description: "D1 projection batches the shard's current incarnation sent (in memory: a load indicator, 0 again after a restart)",
        }),
        d1: D1CostSchema,
      }),
    ),
    total: z.object(units),
  })
  .openapi("StockShardsView");
