import type { DiscountType } from "../db/schema";

const DAY_MS = 86_400_000;

/** Default validity of an issued coupon, in days, when the coupon does not say. */
export const DEFAULT_VALID_DAYS = 7;

/** Whether a discount value is in range for its type (RATE 1..100 %, AMOUNT > 0 won). */
export function isValidDiscount(type: DiscountType, value: number): boolean {
  if (!Number.isSafeInteger(value)) return false;
  return type === "RATE" ? value >= 1 && value <= 100 : value > 0;
}

/** A user coupon expires at min(issued_at + valid_days, coupon end). */
export function userCouponExpiry(issuedAt: number, validDays: number, couponEndsAt: number): number {
  return Math.min(issuedAt + validDays * DAY_MS, couponEndsAt);
}
