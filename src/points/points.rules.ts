import { AppError } from "../shared/errors";

/** Largest amount one charge may add (docs/ARCHITECTURE.md §3). */
export const MAX_CHARGE_AMOUNT = 1_000_000;
/** The balance may never exceed this. */
export const MAX_BALANCE = 5_000_000;

/**
 * Checks a charge amount before any I/O: an integer 1..1,000,000.
 * Zero, negatives and fractions are bad input (400); above the cap is a policy violation (409).
 */
export function assertChargeAmount(amount: number): void {
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new AppError("INVALID_CHARGE_AMOUNT");
  if (amount > MAX_CHARGE_AMOUNT) throw new AppError("CHARGE_LIMIT_EXCEEDED");
}

/** Whether adding `amount` to `balance` stays within the cap. */
export function canCharge(balance: number, amount: number): boolean {
  return balance + amount <= MAX_BALANCE;
}

/** Whether `balance` covers a payment of `amount`. */
export function canPay(balance: number, amount: number): boolean {
  return amount >= 0 && balance >= amount;
}
