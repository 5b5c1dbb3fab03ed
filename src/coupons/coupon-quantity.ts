import { errorFields, log } from "../shared/logger";
import type { BorrowOutcome } from "../sharding/balancer";
import { canSetQuantity } from "./coupon.rules";
import type { SetQuantityOutcome } from "./coupon-issuer.types";
import type { CouponShardStore } from "./coupon-shard.store";
import type { IssuanceStore } from "./issuance.repo";

/** What a quantity change needs of its CouponIssuer shard (shard 0). */
export interface QuantityHost {
  readonly shardStore: CouponShardStore;
  /** The D1 adapter (read on each use: tests swap the object's field). */
  d1(): IssuanceStore;
  /** Takes back from the siblings until shard 0 holds `need` free units. */
  borrowBack(need: number): Promise<BorrowOutcome>;
  /** Arms the alarm for a D1 retry (soon) or a write-behind (sync). */
  arm(when: "retry" | "sync"): Promise<void>;
  /** Clears the alarm once nothing is left for D1. */
  clearAlarmIfSynced(): Promise<void>;
}

/**
 * A coupon's quantity changes, at shard 0 (which holds them), and their D1 write. Owns the
 * order of the two writes and the quantity's stamp (`quantity_version`).
 *
 * Invariant: quantity never drops below the issued count: a cut is taken from the units
 * shard 0 holds free, after borrowing back from its siblings what it lacks, all checked and
 * written in one synchronous step; D1's `coupons.quantity` follows (retried by the alarm if
 * the write fails). Invariant (issue 19): D1's `issued_quantity <= quantity` never refuses a
 * win. A raise is written to D1 *before* the object applies it (no shard can issue a raised
 * unit before D1 has the quantity that counts it); a cut after (D1 then still allows every
 * issuance the objects made). Every write carries the change's stamp and lands only over an
 * older one, so a late alarm write of an older quantity never rolls D1 back.
 */
export class CouponQuantity {
  constructor(private readonly host: QuantityHost) {}

  /** Changes the loaded coupon's quantity to `quantity` (the caller serialises the changes). */
  async change(couponId: number, quantity: number): Promise<SetQuantityOutcome> {
    if (!canSetQuantity(quantity, 0)) return { ok: false, code: "COUPON_QUANTITY_BELOW_ISSUED" };
    const store = this.host.shardStore;
    if (quantity > store.coupon()!.quantity) {
      // A raise: D1 first. If D1 cannot take it nothing changes here (the alarm rewrites the current
      // quantity with a newer stamp, in case the failed write landed after all); the admin retries.
      const version = this.nextVersion();
      try {
        await this.host.d1().updateQuantity(couponId, quantity, version);
      } catch (err) {
        log("warn", "coupon quantity raise not written to D1; not applied", { couponId, ...errorFields(err) });
        store.tx(() => store.markQuantityUnsynced());
        await this.host.arm("retry");
        return { ok: false, code: "INTERNAL_ERROR" };
      }
      store.tx(() => store.applyRaise(quantity, version));
      return { ok: true, couponId, quantity, issuedQuantity: store.coupon()!.issued };
    }
    const apply = () => store.tx(() => store.applyCut(quantity));
    let changed = apply();
    if (!changed && store.coupon()!.shards > 1) {
      // Not enough free here: take back from the siblings what the cut needs, then try again.
      const borrowed = await this.host.borrowBack(store.coupon()!.quantity - quantity);
      if (borrowed.result === "unknown") return { ok: false, code: "INTERNAL_ERROR" };
      changed = apply();
    }
    if (!changed) return { ok: false, code: "COUPON_QUANTITY_BELOW_ISSUED" };

    await this.host.arm("sync");
    await this.write();
    return { ok: true, couponId, quantity, issuedQuantity: store.coupon()!.issued };
  }

  /**
   * Writes the current quantity to D1 under a new stamp, and marks it synced unless a
   * later change overtook it meanwhile. False when D1 failed (the alarm retries).
   */
  async write(): Promise<boolean> {
    const store = this.host.shardStore;
    const c = store.coupon()!;
    const version = this.nextVersion();
    store.tx(() => store.stampQuantity(version));
    try {
      await this.host.d1().updateQuantity(c.id, c.quantity, version);
    } catch (err) {
      log("warn", "coupon quantity D1 write failed; alarm will retry", { couponId: c.id, ...errorFields(err) });
      return false;
    }
    store.markQuantitySynced(c.quantity, version);
    await this.host.clearAlarmIfSynced();
    return true;
  }

  /** A stamp newer than every earlier one of this coupon (persisted with the write it stamps). */
  private nextVersion(): number {
    return Math.max(Date.now(), this.host.shardStore.coupon()!.quantity_version + 1);
  }
}
