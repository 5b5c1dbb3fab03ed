import { z } from "@hono/zod-openapi";
import { idParamSchema, idSchema, intQuery } from "../shared/validation";
import { COUPON_AVAILABILITY_STATUSES } from "./coupon.rules";

export const IssueBodySchema = z
  .strictObject({
    userId: idSchema.openapi({ example: 1 }),
    couponId: idSchema.openapi({ example: 1 }),
  })
  .openapi("IssueCouponRequest");

export const IssueForCouponBodySchema = z.strictObject({ userId: idSchema.openapi({ example: 1 }) }).openapi("IssueCouponForPathRequest");

export const CouponIdParamSchema = z.strictObject({
  couponId: idParamSchema.openapi({ type: "integer", example: 1, param: { name: "couponId", in: "path" } }),
});

/** Owned coupons per page by default (and at most): a page costs D1 its own rows, whatever the user's past. */
export const OWNED_COUPONS_PAGE = 100;

export const OwnerQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
  limit: intQuery(1, OWNED_COUPONS_PAGE, OWNED_COUPONS_PAGE),
  cursor: z.string().max(64).optional().openapi({ description: "`nextCursor` of the previous page" }),
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
    nextCursor: z.string().nullable().openapi({ description: "Pass as `cursor` for the next page; null on the last page" }),
  })
  .openapi("OwnedCoupons");

export const CouponAvailabilitySchema = z
  .object({
    couponId: z.number().int(),
    couponTitle: z.string(),
    discountType: z.enum(["RATE", "AMOUNT"]),
    discountValue: z.number().int(),
    quantity: z.number().int(),
    issued: z.number().int().openapi({ description: "Issued so far, counted by the issuing objects (summed over the coupon's shards)" }),
    remaining: z.number().int().min(0).openapi({ description: "quantity - issued, never below 0" }),
    startsAt: z.string().openapi({ format: "date-time" }),
    endsAt: z.string().openapi({ format: "date-time" }),
    status: z.enum(COUPON_AVAILABILITY_STATUSES).openapi({
      description: "UPCOMING before the window, ENDED from its end, else SOLD_OUT when nothing remains, else OPEN",
    }),
  })
  .openapi("CouponAvailability");
