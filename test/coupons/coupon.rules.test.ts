import { describe, expect, it } from "vitest";
import { canSetQuantity, decideIssue, userCouponExpiry, userCouponStatus, type IssuerCoupon } from "../../src/coupons/coupon.rules";

const DAY = 86_400_000;
const coupon = (over: Partial<IssuerCoupon> = {}): IssuerCoupon => ({
  quantity: 10,
  issued: 0,
  startsAt: 1_000,
  endsAt: 1_000 + 30 * DAY,
  validDays: 7,
  ...over,
});

describe("decideIssue", () => {
  it("issues inside [startsAt, endsAt) while quantity remains", () => {
    expect(decideIssue(coupon(), false, 1_000)).toEqual({ ok: true, issuedAt: 1_000, expiresAt: 1_000 + 7 * DAY });
  });

  it("refuses before the start and from the end on with COUPON_NOT_ISSUABLE", () => {
    expect(decideIssue(coupon(), false, 999)).toEqual({ ok: false, code: "COUPON_NOT_ISSUABLE" });
    expect(decideIssue(coupon(), false, 1_000 + 30 * DAY)).toEqual({ ok: false, code: "COUPON_NOT_ISSUABLE" });
  });

  it("refuses a second issue to the same user, even when sold out", () => {
    expect(decideIssue(coupon(), true, 2_000)).toEqual({ ok: false, code: "COUPON_ALREADY_ISSUED" });
    expect(decideIssue(coupon({ issued: 10 }), true, 2_000)).toEqual({ ok: false, code: "COUPON_ALREADY_ISSUED" });
  });

  it("refuses once issued reaches quantity with COUPON_SOLD_OUT", () => {
    expect(decideIssue(coupon({ issued: 9 }), false, 2_000).ok).toBe(true);
    expect(decideIssue(coupon({ issued: 10 }), false, 2_000)).toEqual({ ok: false, code: "COUPON_SOLD_OUT" });
  });

  it("checks the window before ownership and quantity", () => {
    expect(decideIssue(coupon({ issued: 10 }), true, 0)).toEqual({ ok: false, code: "COUPON_NOT_ISSUABLE" });
  });
});

describe("userCouponExpiry", () => {
  it("is issuedAt + validDays when the coupon ends later", () => {
    expect(userCouponExpiry(0, 7, 30 * DAY)).toBe(7 * DAY);
  });
  it("is the coupon end when that comes first", () => {
    expect(userCouponExpiry(0, 7, 2 * DAY)).toBe(2 * DAY);
  });
});

describe("canSetQuantity", () => {
  it("allows growing and shrinking down to the issued count, not below, and never below 1", () => {
    expect(canSetQuantity(20, 5)).toBe(true);
    expect(canSetQuantity(5, 5)).toBe(true);
    expect(canSetQuantity(4, 5)).toBe(false);
    expect(canSetQuantity(0, 0)).toBe(false);
    expect(canSetQuantity(1.5, 0)).toBe(false);
  });
});

describe("userCouponStatus", () => {
  it("is USED when used (even past expiry), EXPIRED from expiresAt on, else AVAILABLE", () => {
    expect(userCouponStatus(5, 10, 100)).toBe("USED");
    expect(userCouponStatus(null, 10, 10)).toBe("EXPIRED");
    expect(userCouponStatus(null, 10, 9)).toBe("AVAILABLE");
  });
});
