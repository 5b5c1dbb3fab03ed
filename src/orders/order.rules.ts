import type { DiscountType, OrderStatus } from "../db/schema";

/** Statuses the API shows; PENDING and FAILED are internal to placement. */
export const PUBLIC_ORDER_STATUSES = ["NOT_PAID", "PAID", "EXPIRED", "CANCELLED"] as const;
export type PublicOrderStatus = (typeof PUBLIC_ORDER_STATUSES)[number];

export const MAX_ORDER_LINES = 50;
export const MAX_LINE_QUANTITY = 1_000;

/**
 * The allowed moves of an order. PENDING -> NOT_PAID is the commit point of
 * placement; NOT_PAID leaves by exactly one of payment, expiry or cancel.
 */
const TRANSITIONS: Record<OrderStatus, readonly OrderStatus[]> = {
  PENDING: ["NOT_PAID", "FAILED"],
  NOT_PAID: ["PAID", "EXPIRED", "CANCELLED"],
  PAID: [],
  EXPIRED: [],
  CANCELLED: [],
  FAILED: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Whether an order is visible through the API at all. */
export function isPublicStatus(status: OrderStatus): status is PublicOrderStatus {
  return (PUBLIC_ORDER_STATUSES as readonly string[]).includes(status);
}

/** The status a client sees: an unpaid order past its deadline is already EXPIRED for them. */
export function effectiveStatus(status: PublicOrderStatus, expiresAt: number, now: number): PublicOrderStatus {
  return status === "NOT_PAID" && expiresAt <= now ? "EXPIRED" : status;
}

/** Only an unpaid order within its payment window can be paid. */
export function isPayable(status: OrderStatus, expiresAt: number, now: number): boolean {
  return status === "NOT_PAID" && expiresAt > now;
}

/** Whether a user coupon may be applied now (not used, inside its validity window). */
export function couponUsability(
  coupon: { usedAt: number | null; issuedAt: number; expiresAt: number; startsAt: number },
  now: number,
): "OK" | "COUPON_ALREADY_USED" | "COUPON_EXPIRED" {
  if (coupon.usedAt !== null) return "COUPON_ALREADY_USED";
  if (now >= coupon.expiresAt || now < coupon.issuedAt || now < coupon.startsAt) return "COUPON_EXPIRED";
  return "OK";
}

export interface PricedLine {
  quantity: number;
  unitPrice: number;
}

export interface Amounts {
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
}

/** Sum of price x quantity, in integer won. */
export function itemsAmount(lines: readonly PricedLine[]): number {
  return lines.reduce((sum, l) => sum + l.unitPrice * l.quantity, 0);
}

/**
 * RATE: floor(items x value / 100); AMOUNT: min(value, items). The discount
 * never exceeds the items amount, so the total is never negative.
 */
export function discountAmount(items: number, coupon: { discountType: DiscountType; discountValue: number } | undefined): number {
  if (!coupon || items <= 0) return 0;
  const raw = coupon.discountType === "RATE" ? Math.floor((items * coupon.discountValue) / 100) : coupon.discountValue;
  return Math.max(0, Math.min(raw, items));
}

export function orderAmounts(lines: readonly PricedLine[], coupon?: { discountType: DiscountType; discountValue: number }): Amounts {
  const items = itemsAmount(lines);
  const discount = discountAmount(items, coupon);
  return { itemsAmount: items, discountAmount: discount, totalAmount: items - discount };
}
