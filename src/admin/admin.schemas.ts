import { z } from "@hono/zod-openapi";
import { MAX_BALANCE } from "../points/points.rules";
import { isValidDiscount } from "../coupons/coupon.rules";
import { MAX_SHARDS } from "../sharding/routing";

const shardCount = (what: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(MAX_SHARDS)
    .openapi({ example: 8, description: `${what} (docs/ARCHITECTURE.md §9); 1 = one object. At most ${MAX_SHARDS}.` });

const isoWithOffset = z.iso.datetime({ offset: true }).openapi({ format: "date-time", example: "2026-12-01T00:00:00+09:00" });

export const CreateUserBodySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    initialBalance: z.number().int().min(0).max(MAX_BALANCE).optional(),
  })
  .openapi("CreateUserRequest");

export const CreateProductBodySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200),
    description: z.string().max(2000).optional(),
    price: z.number().int().positive().max(100_000_000),
    stock: z.number().int().min(0).max(1_000_000_000),
    stockShards: shardCount(
      "ProductStock shard objects the stock is split over (default 1): more than 1 only for a product expected to take hundreds of orders a second",
    ).optional(),
  })
  .openapi("CreateProductRequest");

export const CreateCouponBodySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200),
    discountType: z.enum(["RATE", "AMOUNT"]),
    discountValue: z.number().int().positive().max(100_000_000),
    quantity: z.number().int().positive().max(10_000_000),
    startsAt: isoWithOffset,
    endsAt: isoWithOffset,
    validDays: z.number().int().min(1).max(3650).optional(),
    shards: shardCount("CouponIssuer shard objects the quantity is split over").optional(),
  })
  .refine((b) => isValidDiscount(b.discountType, b.discountValue), {
    message: "RATE discountValue must be 1..100 (percent); AMOUNT must be positive",
    path: ["discountValue"],
  })
  .refine((b) => Date.parse(b.endsAt) > Date.parse(b.startsAt), {
    message: "endsAt must be after startsAt",
    path: ["endsAt"],
  })
  .openapi("CreateCouponRequest");

export const SetCouponQuantityBodySchema = z
  .strictObject({ quantity: z.number().int().positive().max(10_000_000).openapi({ example: 200 }) })
  .openapi("SetCouponQuantityRequest");

export const CouponQuantitySchema = z
  .object({ couponId: z.number().int(), quantity: z.number().int(), issuedQuantity: z.number().int() })
  .openapi("CouponQuantity");

export const SetCouponShardsBodySchema = z
  .strictObject({ shards: shardCount("New shard count: only raised, only before the window opens and while nothing is issued") })
  .openapi("SetCouponShardsRequest");

export const CouponShardsSchema = z.object({ couponId: z.number().int(), shards: z.number().int() }).openapi("CouponShards");

/** What an object's own D1 calls cost since it started (src/shared/hops.ts D1Cost). */
export const D1CostSchema = z
  .object({
    calls: z.number().int(),
    rowsRead: z.number().int(),
    rowsWritten: z.number().int(),
    writeTx: z.number().int().openapi({ description: "D1 calls (a batch is one) that changed the database" }),
  })
  .openapi("D1Cost", {
    description:
      "The object's own D1 calls, rows read and written, and write transactions, since its current incarnation started (in memory)",
  });

export const CouponShardStateSchema = z
  .object({
    shard: z.number().int(),
    shards: z.number().int(),
    held: z.number().int().openapi({ description: "Units the shard holds (its share, plus borrowed, minus lent)" }),
    issued: z.number().int(),
    free: z.number().int(),
    unsynced: z.number().int().openapi({ description: "Issuances D1 has not confirmed yet" }),
    openTransfers: z.number().int(),
    requests: z.number().int().openapi({ description: "Issuance requests the shard's current incarnation answered" }),
    d1Batches: z.number().int().openapi({ description: "D1 write batches the shard's current incarnation sent" }),
    d1: D1CostSchema,
  })
  .openapi("CouponShardState");

export const CouponShardsViewSchema = z
  .object({
    couponId: z.number().int(),
    shards: z.number().int(),
    quantity: z.number().int(),
    issued: z.number().int(),
    free: z.number().int(),
    perShard: z.array(CouponShardStateSchema),
  })
  .openapi("CouponShardsView");

/** `{<name>: id}`, typed by the literal name (a typed client sees `data.userId: number`, not an optional index). */
export const CreatedIdSchema = <K extends string>(name: K) => z.object({ [name]: z.number().int() } as { [P in K]: z.ZodNumber });

export const AdjustStockBodySchema = z
  .strictObject({
    delta: z
      .number()
      .int()
      .min(-1_000_000_000)
      .max(1_000_000_000)
      .refine((d) => d !== 0, "delta must not be 0")
      .openapi({ example: 10, description: "Units to add (positive) or remove (negative)" }),
  })
  .openapi("AdjustStockRequest");

export const StockLevelSchema = z.object({ productId: z.number().int(), stock: z.number().int() }).openapi("StockLevel");

const GroupStatsSchema = z
  .object({
    batches: z.number().int().openapi({ description: "D1 batches sent" }),
    requests: z.number().int().openapi({ description: "Requests whose writes went out in them" }),
    largest: z.number().int().openapi({ description: "Most requests in one batch" }),
    split: z.number().int().openapi({ description: "Batches refused by a constraint and retried request by request" }),
    failed: z.number().int().openapi({ description: "Batches that failed as a whole (each request answered 503)" }),
  })
  .openapi("D1GroupStats");

export const D1GroupsSchema = z
  .object({
    kinds: z
      .record(z.string(), GroupStatsSchema)
      .openapi({ example: { "orders.pay": { batches: 16, requests: 150, largest: 32, split: 0, failed: 0 } } }),
  })
  .openapi("D1Groups");
