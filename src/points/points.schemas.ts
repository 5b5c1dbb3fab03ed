import { z } from "@hono/zod-openapi";
import { idParamSchema, idSchema, intQuery } from "../shared/validation";

export const ChargeBodySchema = z
  .strictObject({
    userId: idSchema.openapi({ example: 1 }),
    amount: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).openapi({ example: 10_000, description: "1..1,000,000 won" }),
  })
  .openapi("ChargeRequest");

export const UserIdQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
});

export const HistoryQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
  limit: intQuery(1, 100, 20),
  cursor: z.string().max(64).optional(),
});

export const BalanceSchema = z.object({ userId: z.number().int(), balance: z.number().int() }).openapi("Balance");

export const HistorySchema = z
  .object({
    userId: z.number().int(),
    items: z.array(
      z.object({
        type: z.enum(["CHARGE", "USE", "REFUND"]),
        amount: z.number().int(),
        balanceAfter: z.number().int(),
        orderId: z.number().int().nullable(),
        createdAt: z.string().openapi({ format: "date-time" }),
      }),
    ),
    nextCursor: z.string().nullable(),
  })
  .openapi("PointHistory");
