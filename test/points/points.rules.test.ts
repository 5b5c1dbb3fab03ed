import { describe, expect, it } from "vitest";
import { assertChargeAmount, canCharge, canPay, MAX_BALANCE, MAX_CHARGE_AMOUNT } from "../../src/points/points.rules";
import { AppError } from "../../src/shared/errors";

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof AppError ? e.code : "other";
  }
}

describe("points rules", () => {
  it("accepts 1..1,000,000 and classifies the rest", () => {
    expect(codeOf(() => assertChargeAmount(1))).toBeUndefined();
    expect(codeOf(() => assertChargeAmount(MAX_CHARGE_AMOUNT))).toBeUndefined();
    expect(codeOf(() => assertChargeAmount(MAX_CHARGE_AMOUNT + 1))).toBe("CHARGE_LIMIT_EXCEEDED");
    expect(codeOf(() => assertChargeAmount(0))).toBe("INVALID_CHARGE_AMOUNT");
    expect(codeOf(() => assertChargeAmount(-1))).toBe("INVALID_CHARGE_AMOUNT");
    expect(codeOf(() => assertChargeAmount(0.5))).toBe("INVALID_CHARGE_AMOUNT");
    expect(codeOf(() => assertChargeAmount(Number.NaN))).toBe("INVALID_CHARGE_AMOUNT");
  });

  it("caps the balance at 5,000,000 and never pays below zero", () => {
    expect(canCharge(MAX_BALANCE - 10, 10)).toBe(true);
    expect(canCharge(MAX_BALANCE - 10, 11)).toBe(false);
    expect(canPay(100, 100)).toBe(true);
    expect(canPay(99, 100)).toBe(false);
    expect(canPay(100, -1)).toBe(false);
  });
});
