import { z } from "@hono/zod-openapi";
import { idParamSchema, idSchema } from "../shared/validation";

export const IssueBodySchema = z
  .strictObject({
    userId: idSchema.openapi({ example: 1 }),
    couponId: idSchema.openapi({ example: 1 }),
  })
  .openapi("IssueCouponRequest");

export const IssueForCouponBodySchema = z
  .strictObject({ userId: idSchema.openapi({ example: 1 }) })
  .openapi("IssueCouponForPathRequest");

export const CouponIdParamSchema = z.strictObject({
  couponId: idParamSchema.openapi({ type: "integer", example: 1, param: { name: "couponId", in: "path" } }),
});

export const OwnerQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
});

export const IssuedCouponSchema = z
  .object({
    userCouponId: z.number().int().openapi({ description: "The user coupon to order with; a 201 is only sent once D1 holds it" }),
    couponId: z.number().int(),
    userId: z.number().int(),
    expiresAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("IssuedCoupon");

export const OwnedCouponsSchema = z
  .object({
    userId: z.number().int(),
    coupons: z.array(
      z.object({
        userCouponId: z.number().int(),
        couponId: z.number().int(),
        couponTitle: z.string(),
        discountType: z.enum(["RATE", "AMOUNT"]),
        discountValue: z.number().int(),
        issuedAt: z.string().openapi({ format: "date-time" }),
        expiresAt: z.string().openapi({ format: "date-time" }),
        usedAt: z.string().nullable().openapi({ format: "date-time" }),
        status: z.enum(["AVAILABLE", "USED", "EXPIRED"]),
      }),
    ),
  })
  .openapi("OwnedCoupons");
