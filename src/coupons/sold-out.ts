/** Per-isolate memories of the Worker in front of the CouponIssuer shards (docs/ARCHITECTURE.md §8, §9). */

/**
 * How long a Worker isolate believes a CouponIssuer that said COUPON_SOLD_OUT:
 * for that long it refuses the coupon itself, with no round trip (docs/ARCHITECTURE.md §8).
 * It can only refuse, never grant; an admin quantity change handled by the same
 * isolate forgets it at once, other isolates within this bound.
 */
export const SOLD_OUT_TTL_MS = 1_000;
/** Entries kept at most; expired ones are dropped first. */
const SOLD_OUT_MAX_ENTRIES = 1_000;

/** Per-isolate memory of sold-out coupons (module scope: shared by the requests of one isolate). */
export class SoldOutMemo {
  private readonly until = new Map<number, number>();

  isSoldOut(couponId: number, now: number): boolean {
    const t = this.until.get(couponId);
    if (t === undefined) return false;
    if (t > now) return true;
    this.until.delete(couponId);
    return false;
  }

  remember(couponId: number, now: number): void {
    if (this.until.size >= SOLD_OUT_MAX_ENTRIES) {
      for (const [id, t] of this.until) if (t <= now) this.until.delete(id);
      if (this.until.size >= SOLD_OUT_MAX_ENTRIES) this.until.delete(this.until.keys().next().value!);
    }
    this.until.set(couponId, now + SOLD_OUT_TTL_MS);
  }

  forget(couponId: number): void {
    this.until.delete(couponId);
  }
}

/** The isolate's memo; every CouponsService of this isolate shares it. */
export const isolateSoldOut = new SoldOutMemo();

/** Most coupons whose shard count an isolate remembers. */
const SHARD_COUNT_MAX_ENTRIES = 1_000;
/** A count learnt before the window opens is believed this long (it may still be raised). */
export const SHARD_COUNT_TTL_BEFORE_OPEN_MS = 1_000;
/** After the window opened the count is fixed; it is still re-checked this often (every shard refuses a wrong one). */
export const SHARD_COUNT_TTL_OPEN_MS = 600_000;

/**
 * Per-isolate memory of each coupon's shard count, so a request goes straight to the
 * user's home shard (one DO call). Unknown means 1: shard 0, which is the coupon's
 * object of before sharding and the authority on the count; it answers WRONG_SHARD with
 * the count when the coupon has more shards, and the isolate remembers it. Never unsafe:
 * every shard checks the count and the home of the user itself and refuses a misrouted
 * call, so a stale entry costs one more call, never a second coupon for a user.
 */
export class ShardCountMemo {
  private readonly entries = new Map<number, { shards: number; until: number }>();

  get(couponId: number, now: number): number {
    const e = this.entries.get(couponId);
    if (!e) return 1;
    if (e.until > now) return e.shards;
    this.entries.delete(couponId);
    return 1;
  }

  remember(couponId: number, shards: number, startsAt: number, now: number): void {
    if (this.entries.size >= SHARD_COUNT_MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    const until = now >= startsAt ? now + SHARD_COUNT_TTL_OPEN_MS : Math.min(startsAt, now + SHARD_COUNT_TTL_BEFORE_OPEN_MS);
    this.entries.set(couponId, { shards, until });
  }

  forget(couponId: number): void {
    this.entries.delete(couponId);
  }
}

/** The isolate's shard counts; every coupon client of this isolate shares it. */
export const isolateShardCounts = new ShardCountMemo();
