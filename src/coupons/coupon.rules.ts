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

/** What the issuer knows about its coupon when it decides. */
export interface IssuerCoupon {
  quantity: number;
  issued: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
}

export type IssueRefusal = "COUPON_NOT_ISSUABLE" | "COUPON_ALREADY_ISSUED" | "COUPON_SOLD_OUT";

export type IssueDecision = { ok: true; issuedAt: number; expiresAt: number } | { ok: false; code: IssueRefusal };

/**
 * The first-come issuance rule (docs/ARCHITECTURE.md §3), checked in this order: the window
 * [startsAt, endsAt) contains `now`; the user has not got it; quantity remains.
 * An owner asking again after the coupon sold out hears ALREADY_ISSUED, which
 * tells them more than SOLD_OUT would.
 */
export function decideIssue(coupon: IssuerCoupon, alreadyIssued: boolean, now: number): IssueDecision {
  if (now < coupon.startsAt || now >= coupon.endsAt) return { ok: false, code: "COUPON_NOT_ISSUABLE" };
  if (alreadyIssued) return { ok: false, code: "COUPON_ALREADY_ISSUED" };
  if (coupon.issued >= coupon.quantity) return { ok: false, code: "COUPON_SOLD_OUT" };
  return { ok: true, issuedAt: now, expiresAt: userCouponExpiry(now, coupon.validDays, coupon.endsAt) };
}

/** A coupon's quantity may grow or shrink, but never below what is already issued. */
export function canSetQuantity(quantity: number, issued: number): boolean {
  return Number.isSafeInteger(quantity) && quantity >= 1 && quantity >= issued;
}

export type UserCouponStatus = "AVAILABLE" | "USED" | "EXPIRED";

/** USED once used (even if past expiry); otherwise EXPIRED from `expiresAt` on; else AVAILABLE. */
export function userCouponStatus(usedAt: number | null, expiresAt: number, now: number): UserCouponStatus {
  if (usedAt !== null) return "USED";
  return now >= expiresAt ? "EXPIRED" : "AVAILABLE";
}

export const COUPON_AVAILABILITY_STATUSES = ["UPCOMING", "OPEN", "SOLD_OUT", "ENDED"] as const;
export type CouponAvailabilityStatus = (typeof COUPON_AVAILABILITY_STATUSES)[number];

/**
 * What a sale page shows: UPCOMING before the window, ENDED from its end on (sold out or not: the
 * sale is over), else SOLD_OUT when nothing remains, else OPEN. `remaining` is never below zero.
 */
export function couponAvailability(
  c: { quantity: number; issued: number; startsAt: number; endsAt: number },
  now: number,
): { remaining: number; status: CouponAvailabilityStatus } {
  const remaining = Math.max(0, c.quantity - c.issued);
  if (now < c.startsAt) return { remaining, status: "UPCOMING" };
  if (now >= c.endsAt) return { remaining, status: "ENDED" };
  return { remaining, status: remaining === 0 ? "SOLD_OUT" : "OPEN" };
}
