import { describe, expect, it } from "vitest";
import { canTransition, couponUsability, discountAmount, effectiveStatus, isPayable, orderAmounts } from "../../src/orders/order.rules";

describe("discount and amounts", () => {
  it("floors a RATE discount to whole won", () => {
    expect(discountAmount(999, { discountType: "RATE", discountValue: 10 })).toBe(99);
    expect(discountAmount(1_005, { discountType: "RATE", discountValue: 33 })).toBe(331);
    expect(discountAmount(1, { discountType: "RATE", discountValue: 99 })).toBe(0);
    expect(discountAmount(5_000, { discountType: "RATE", discountValue: 100 })).toBe(5_000);
  });

  it("caps an AMOUNT discount at the items amount", () => {
    expect(discountAmount(3_000, { discountType: "AMOUNT", discountValue: 1_000 })).toBe(1_000);
    expect(discountAmount(800, { discountType: "AMOUNT", discountValue: 1_000 })).toBe(800);
  });

  it("never makes the total negative and gives no discount without a coupon", () => {
    expect(orderAmounts([{ unitPrice: 500, quantity: 1 }], { discountType: "AMOUNT", discountValue: 10_000 })).toEqual({
      itemsAmount: 500,
      discountAmount: 500,
      totalAmount: 0,
    });
    expect(
      orderAmounts([
        { unitPrice: 1_200, quantity: 3 },
        { unitPrice: 700, quantity: 2 },
      ]),
    ).toEqual({
      itemsAmount: 5_000,
      discountAmount: 0,
      totalAmount: 5_000,
    });
    expect(orderAmounts([{ unitPrice: 1_234, quantity: 7 }], { discountType: "RATE", discountValue: 15 })).toEqual({
      itemsAmount: 8_638,
      discountAmount: 1_295,
      totalAmount: 7_343,
    });
  });
});

describe("order states", () => {
  it("lets NOT_PAID leave only to PAID, EXPIRED or CANCELLED, and terminal states nowhere", () => {
    expect(canTransition("PENDING", "NOT_PAID")).toBe(true);
    expect(canTransition("PENDING", "PAID")).toBe(false);
    for (const to of ["PAID", "EXPIRED", "CANCELLED"] as const) expect(canTransition("NOT_PAID", to)).toBe(true);
    for (const from of ["PAID", "EXPIRED", "CANCELLED", "FAILED"] as const) {
      expect(canTransition(from, "NOT_PAID")).toBe(false);
      expect(canTransition(from, "CANCELLED")).toBe(false);
    }
  });

  it("treats an unpaid order past its deadline as expired and unpayable", () => {
    expect(isPayable("NOT_PAID", 2_000, 1_999)).toBe(true);
    expect(isPayable("NOT_PAID", 2_000, 2_000)).toBe(false);
    expect(isPayable("PAID", 2_000, 1_000)).toBe(false);
    expect(effectiveStatus("NOT_PAID", 2_000, 2_000)).toBe("EXPIRED");
    expect(effectiveStatus("PAID", 2_000, 3_000)).toBe("PAID");
  });

  it("tells a used coupon from one outside its window", () => {
    const base = { usedAt: null, issuedAt: 100, expiresAt: 1_000, startsAt: 0 };
    expect(couponUsability(base, 500)).toBe("OK");
    expect(couponUsability({ ...base, usedAt: 400 }, 500)).toBe("COUPON_ALREADY_USED");
    expect(couponUsability(base, 1_000)).toBe("COUPON_EXPIRED");
    expect(couponUsability(base, 50)).toBe("COUPON_EXPIRED");
    expect(couponUsability({ ...base, startsAt: 600 }, 500)).toBe("COUPON_EXPIRED");
  });
});
