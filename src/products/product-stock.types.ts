import type { D1Cost } from "../shared/hops";
import type { ShardAddress } from "../sharding/routing";
/** What the ProductStock DO answers: discriminated unions, never thrown errors (they cross RPC). */
export type ReservationStatus = "held" | "confirmed" | "sold" | "released";

export interface Reservation {
  orderId: number;
  quantity: number;
  status: ReservationStatus;
  expiresAt: number;
}

/**
 * Round trips a shard made before answering (present only when it made some):
 * `do`, sequential rounds of calls to its siblings (borrowing); `d1`, its first
 * load. The Worker adds them to the request's depth (docs/ARCHITECTURE.md §8).
 */
export interface NestedCalls {
  do: number;
  d1: number;
}

/** What `reserve` is asked (the options of both the object's RPC and the StockPort). */
export interface ReserveRequest {
  productId: number;
  orderId: number;
  quantity: number;
  now: number;
  /** Reserve and confirm in one call (order placement: its PENDING order row exists before the call). */
  confirmed?: boolean;
  /** The line's shard and the product's K (default: the unsharded object). */
  at?: ShardAddress;
}

/**
 * SHARDS_BUSY: this shard could cover the line neither alone nor by borrowing, and
 * could not prove the siblings empty either (calls failed, units kept moving): try
 * again (503), never a false "out of stock".
 */
export type ReserveResult = (
  | { ok: true; reservation: Reservation; available: number }
  | {
      ok: false;
      code: "INSUFFICIENT_STOCK" | "PRODUCT_NOT_FOUND" | "ALREADY_RELEASED" | "INVALID_QUANTITY" | "SHARDS_BUSY";
      available: number;
    }
) & { nested?: NestedCalls };
export type ConfirmResult = { ok: true; reservation: Reservation } | { ok: false; code: "HOLD_EXPIRED" | "NOT_RESERVED" };
export type SellResult = { ok: true; reservation: Reservation } | { ok: false; code: "NOT_RESERVED" | "ALREADY_RELEASED" };
export type ReleaseResult = { ok: true; released: number } | { ok: false; code: "ALREADY_SOLD" };
/** Orders of a batched settlement that kept their state, with why. */
export interface SettleManyResult {
  refused: { orderId: number; code: "NOT_RESERVED" | "ALREADY_RELEASED" | "ALREADY_SOLD" }[];
}
export type RestockResult =
  | { ok: true; available: number }
  | { ok: false; code: "INSUFFICIENT_STOCK" | "PRODUCT_NOT_FOUND" | "INVALID_QUANTITY"; available: number };
/** What `prime` left in a shard (admin creation and shard-count raises). */
export interface PrimeResult {
  shard: number;
  shards: number;
  available: number;
}
export interface StockSnapshot {
  productId: number;
  available: number;
  held: number;
  confirmed: number;
  sold: number;
}
/** A shard's snapshot with what the admin shard view adds: transfers in flight and load indicators. */
export interface StockShardState extends StockSnapshot {
  /** Transfers this shard asked for and has not closed (units possibly in flight to it). */
  openTransfers: number;
  /** `reserve` calls this incarnation of the object answered (in memory; 0 again after a restart). */
  requests: number;
  /** D1 projection batches this incarnation sent (in memory; 0 again after a restart). */
  d1Batches: number;
  /** What this incarnation's own D1 calls cost (in memory; 0 again after a restart). */
  d1: D1Cost;
}
