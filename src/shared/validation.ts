import { z } from "@hono/zod-openapi";
import type { ZodError } from "zod";
import { AppError, type ErrorCode } from "./errors";

/** A positive safe integer id in a JSON body. */
export const idSchema = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A positive safe integer id in a path or query string (digits only, no sign, no leading zero). */
export const idParamSchema = z
  .string()
  .regex(/^[1-9][0-9]{0,15}$/, "must be a positive integer")
  .transform(Number)
  .refine((n) => Number.isSafeInteger(n), "must be a safe integer");

/** An integer in a query string within [min, max], default when absent. */
export function intQuery(min: number, max: number, fallback: number) {
  return z
    .string()
    .regex(/^(0|[1-9][0-9]{0,8})$/, "must be a non-negative integer")
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be between ${min} and ${max}`)
    .optional()
    .transform((v) => v ?? fallback)
    .openapi({ type: "integer", minimum: min, maximum: max, default: fallback });
}

/** Which field's failure maps to which dedicated error code (docs/ARCHITECTURE.md §4). */
const FIELD_CODES: Record<string, ErrorCode> = {
  userId: "INVALID_USER_ID",
  productId: "INVALID_PRODUCT_ID",
  couponId: "INVALID_COUPON_ID",
  userCouponId: "INVALID_COUPON_ID",
  orderId: "INVALID_ORDER_ID",
  quantity: "INVALID_QUANTITY",
  amount: "INVALID_CHARGE_AMOUNT",
};

/**
 * Turns a zod failure into one AppError. A present-but-invalid id, quantity or
 * amount gets its dedicated code; a missing field, an unknown field or any
 * other shape problem is VALIDATION_FAILED with the problems spelled out.
 */
export function validationError(error: ZodError, target: string): AppError {
  const issues = error.issues;
  const first = issues[0];
  if (first && first.code !== "unrecognized_keys") {
    const field = [...first.path].reverse().find((p) => typeof p === "string");
    const missing = first.code === "invalid_type" && /received undefined/.test(first.message);
    if (typeof field === "string" && FIELD_CODES[field] && !missing) {
      return new AppError(FIELD_CODES[field]);
    }
  }
  const words = issues
    .slice(0, 5)
    .map((i) => {
      const where = i.path.length ? i.path.join(".") : target;
      if (i.code === "unrecognized_keys") return `${where}: unknown field(s) ${i.keys.join(", ")}`;
      return `${where}: ${i.message}`;
    })
    .join("; ");
  return new AppError("VALIDATION_FAILED", words || "invalid request");
}
