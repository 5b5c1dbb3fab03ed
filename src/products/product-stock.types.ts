/** What the ProductStock DO answers: discriminated unions, never thrown errors (they cross RPC). */
export type ReservationStatus = "held" | "confirmed" | "sold" | "released";

export interface Reservation {
  orderId: number;
  quantity: number;
  status: ReservationStatus;
  expiresAt: number;
}

export type ReserveResult =
  | { ok: true; reservation: Reservation; available: number }
  | { ok: false; reason: "INSUFFICIENT_STOCK" | "PRODUCT_NOT_FOUND" | "ALREADY_RELEASED" | "INVALID_QUANTITY"; available: number };
export type ConfirmResult = { ok: true; reservation: Reservation } | { ok: false; reason: "HOLD_EXPIRED" | "NOT_RESERVED" };
export type SellResult = { ok: true; reservation: Reservation } | { ok: false; reason: "NOT_RESERVED" | "ALREADY_RELEASED" };
export type ReleaseResult = { ok: true; released: number } | { ok: false; reason: "ALREADY_SOLD" };
/** Orders of a batched settlement that kept their state, with why. */
export interface SettleManyResult {
  refused: { orderId: number; reason: "NOT_RESERVED" | "ALREADY_RELEASED" | "ALREADY_SOLD" }[];
}
export type RestockResult =
  | { ok: true; available: number }
  | { ok: false; reason: "INSUFFICIENT_STOCK" | "PRODUCT_NOT_FOUND" | "INVALID_QUANTITY"; available: number };
export interface StockSnapshot {
  productId: number;
  available: number;
  held: number;
  confirmed: number;
  sold: number;
}
