import { z } from "@hono/zod-openapi";
import { idParamSchema, idSchema, intQuery } from "../shared/validation";
import { MAX_LINE_QUANTITY, MAX_ORDER_LINES, PUBLIC_ORDER_STATUSES } from "./order.rules";

const iso = z.string().openapi({ format: "date-time" });

/** Orders per page by default and at most (GET /orders). */
export const ORDER_PAGE_DEFAULT = 20;
export const ORDER_PAGE_MAX = 100;

export const OrderProductSchema = z.strictObject({
  productId: idSchema.openapi({ example: 1 }),
  quantity: z.number().int().min(1).max(MAX_LINE_QUANTITY).openapi({ example: 2 }),
});

export const PlaceOrderBodySchema = z
  .strictObject({
    userId: idSchema.openapi({ example: 1 }),
    userCouponId: idSchema.optional().openapi({ example: 1 }),
    orderProducts: z
      .array(OrderProductSchema)
      .min(1)
      .max(MAX_ORDER_LINES)
      .refine((lines) => new Set(lines.map((l) => l.productId)).size === lines.length, "productIds must be distinct"),
  })
  .openapi("PlaceOrderRequest");

export const OrderIdParamSchema = z.strictObject({
  orderId: idParamSchema.openapi({ type: "integer", example: 1, param: { name: "orderId", in: "path" } }),
});

export const UserIdQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
});

export const CancelOrderBodySchema = z.strictObject({ userId: idSchema.openapi({ example: 1 }) }).openapi("CancelOrderRequest");

export const PayOrderBodySchema = z
  .strictObject({ userId: idSchema.openapi({ example: 1 }), orderId: idSchema.openapi({ example: 1 }) })
  .openapi("PayOrderRequest");

export const PlacedOrderSchema = z
  .object({
    orderId: z.number().int(),
    status: z.literal("NOT_PAID"),
    itemsAmount: z.number().int(),
    discountAmount: z.number().int(),
    totalAmount: z.number().int(),
    expiresAt: iso,
  })
  .openapi("PlacedOrder");

export const OrderSchema = z
  .object({
    orderId: z.number().int(),
    userId: z.number().int(),
    status: z.enum(PUBLIC_ORDER_STATUSES),
    itemsAmount: z.number().int(),
    discountAmount: z.number().int(),
    totalAmount: z.number().int(),
    userCouponId: z.number().int().nullable(),
    createdAt: iso,
    expiresAt: iso,
    paidAt: iso.nullable(),
    items: z.array(
      z.object({ productId: z.number().int(), quantity: z.number().int(), unitPrice: z.number().int(), amount: z.number().int() }),
    ),
  })
  .openapi("Order");

export const PaymentReceiptSchema = z
  .object({ orderId: z.number().int(), status: z.literal("PAID"), paidAmount: z.number().int(), balance: z.number().int() })
  .openapi("PaymentReceipt");

export const OrderListQuerySchema = z.strictObject({
  userId: idParamSchema.openapi({ type: "integer", example: 1 }),
  status: z
    .enum(PUBLIC_ORDER_STATUSES)
    .optional()
    .openapi({ description: "Only orders the client would see in this status (an unpaid order past its deadline is EXPIRED)" }),
  limit: intQuery(1, ORDER_PAGE_MAX, ORDER_PAGE_DEFAULT),
  cursor: z.string().max(64).optional().openapi({ description: "`nextCursor` of the previous page" }),
});

export const OrderPageSchema = z
  .object({
    userId: z.number().int(),
    items: z.array(
      z.object({
        orderId: z.number().int(),
        status: z.enum(PUBLIC_ORDER_STATUSES),
        itemsAmount: z.number().int(),
        discountAmount: z.number().int(),
        totalAmount: z.number().int(),
        createdAt: iso,
        expiresAt: iso,
        paidAt: iso.nullable(),
        items: z.array(
          z.object({ productId: z.number().int(), productName: z.string(), quantity: z.number().int(), unitPrice: z.number().int() }),
        ),
      }),
    ),
    nextCursor: z.string().nullable().openapi({ description: "Pass as `cursor` for the next (older) page; null on the last page" }),
  })
  .openapi("OrderPage");
