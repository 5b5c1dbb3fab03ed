import type { D1Cost } from "../shared/hops";
import type { ShardAddress } from "../sharding/routing";
import type { IssueRefusal } from "./coupon.rules";

/**
 * What the CouponIssuer DO answers: discriminated unions on `ok`, a refusal named by `code` (the
 * ProductStock's results have the same shape), never thrown errors (they cross RPC).
 */

/** What `issue` is asked: the coupon, the user, the time, and the shard the caller routed to. */
export interface IssueRequest {
  couponId: number;
  userId: number;
  now: number;
  /** The user's home shard under the K the caller knows (default: the unsharded object). */
  at?: ShardAddress;
  /** The request's Idempotency-Key, stored with the issuance (a twin under it gets the issuance's answer). */
  requestKey?: string;
}

/** Outcome of `issue`: business refusals are values, never thrown across RPC. */
export type IssueOutcome = (
  | {
      ok: true;
      couponId: number;
      userId: number;
      issuedAt: number;
      expiresAt: number;
      /** The D1 row's id: a success is only answered once D1 holds the row. */
      userCouponId: number;
    }
  | { ok: false; code: IssueRefusal | "COUPON_NOT_FOUND" | "USER_NOT_FOUND" | "SERVICE_UNAVAILABLE" | "INTERNAL_ERROR" }
  /** A twin of an issuance under the same Idempotency-Key that is still being written to D1: ask again. */
  | { ok: false; code: "IDEMPOTENCY_KEY_IN_PROGRESS" }
  /**
   * The caller routed by another shard count than the coupon has, or to a shard that is not
   * the user's home. Shard 0 is the authority and says the count (`shards`) and when the
   * window opens (after which the count never changes); another shard leaves `shards` out,
   * and the caller asks shard 0.
   */
  | { ok: false; code: "WRONG_SHARD"; shards?: number; startsAt: number }
) & {
  /** D1 round trips the object made before answering (0 for a refusal it could decide alone). */
  d1Calls: number;
  /** Sequential rounds of calls to sibling shards it made before answering (borrowing). */
  doCalls: number;
};

export type SetShardsOutcome =
  | { ok: true; shards: number }
  | { ok: false; code: "COUPON_NOT_FOUND" | "COUPON_SHARDS_LOCKED" | "INTERNAL_ERROR" };

export type PrimeOutcome = { ok: true; shards: number; startsAt: number } | { ok: false; code: "COUPON_NOT_FOUND" | "INTERNAL_ERROR" };

export type SetQuantityOutcome =
  | { ok: true; couponId: number; quantity: number; issuedQuantity: number }
  | { ok: false; code: "COUPON_NOT_FOUND" | "COUPON_QUANTITY_BELOW_ISSUED" | "INTERNAL_ERROR" };

/** What the DO reports about itself (tests and diagnostics). */
export interface IssuerState {
  couponId: number | null;
  /** The coupon's quantity (all shards together). */
  quantity: number;
  /** Issued by this shard. */
  issued: number;
  users: number[];
  unsynced: number;
  shard: number;
  shards: number;
  /** Units this shard holds (its share plus what it borrowed, minus what it lent); free = held - issued. */
  held: number;
  /** Transfers this shard asked for and has not closed. */
  openTransfers: number;
  /** Issuance requests this incarnation of the object answered (not persisted: a load indicator). */
  requests: number;
  /** D1 projection batches this incarnation wrote (group commits and alarm retries; a load indicator). */
  d1Batches: number;
  /** What this incarnation's own D1 calls cost: calls, rows read and written, write transactions. */
  d1: D1Cost;
}

/** What the public availability read needs of one shard: no issuance list, no counting of unsynced rows. */
export interface IssuerCounts {
  /** False when this shard never loaded its coupon (it issued nothing). */
  loaded: boolean;
  /** The coupon's quantity as this shard knows it (shard 0's is authoritative: quantity changes go there). */
  quantity: number;
  /** Issued by this shard. */
  issued: number;
}
