import { callObject, HopMeter } from "../shared/hops";
import { toIso, toIsoOrNull } from "../shared/clock";
import { AppError } from "../shared/errors";
import { errorFields, log } from "../shared/logger";
import type { IssueOutcome, SetQuantityOutcome } from "./coupon-issuer.do";
import { userCouponStatus, type UserCouponStatus } from "./coupon.rules";
import type { CouponsRepo } from "./coupons.repo";
import type { UserCouponCache } from "./user-coupon.cache";

/** The port to the per-coupon serializer (the CouponIssuer DO in production). */
export interface CouponIssuerPort {
  issue(couponId: number, userId: number, now: number): Promise<IssueOutcome>;
  setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome>;
  /** Loads a new coupon into its object ahead of the first issuance. */
  prime(couponId: number): Promise<string>;
}

/** Adapter: one CouponIssuer DO per coupon, addressed by the coupon id; the object's own D1 calls count as nested hops. */
export function couponIssuerClient(ns: Env["COUPON_ISSUER"], meter: HopMeter = new HopMeter()): CouponIssuerPort {
  const stub = (couponId: number) => ns.get(ns.idFromName(String(couponId)));
  return {
    issue: (couponId, userId, now) =>
      callObject<IssueOutcome>(
        meter,
        async () => {
          const out = (await stub(couponId).issue(couponId, userId, now)) as IssueOutcome;
          meter.noteNested("d1", out.d1Calls);
          return out;
        },
        (out) => out.d1Calls,
      ),
    setQuantity: (couponId, quantity) => callObject<SetQuantityOutcome>(meter, () => stub(couponId).setQuantity(couponId, quantity)),
    prime: (couponId) => callObject<string>(meter, () => stub(couponId).prime(couponId)),
  };
}

/**
 * How long a Worker isolate believes a CouponIssuer that said COUPON_SOLD_OUT:
 * for that long it refuses the coupon itself, with no round trip (DESIGN §8).
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

export interface IssuedCoupon {
  userCouponId: number;
  couponId: number;
  userId: number;
  expiresAt: string;
}

export interface OwnedCoupon {
  userCouponId: number;
  couponId: number;
  couponTitle: string;
  discountType: "RATE" | "AMOUNT";
  discountValue: number;
  issuedAt: string;
  expiresAt: string;
  usedAt: string | null;
  status: UserCouponStatus;
}

/** Coupon use cases: first-come issuance, the owner's list, quantity changes. */
export class CouponsService {
  constructor(
    private readonly repo: CouponsRepo,
    private readonly issuer: CouponIssuerPort,
    private readonly clock: () => number,
    private readonly cache: UserCouponCache,
    private readonly soldOut: SoldOutMemo = isolateSoldOut,
  ) {}

  /**
   * One round trip for a refusal, two for a win (the DO decides, then writes the
   * D1 row, which also proves the user exists), none while this isolate knows
   * the coupon is sold out. Because the DO decides before D1 is asked, a sold-out,
   * closed or already-owned coupon is refused before the user is looked up
   * (README: error precedence).
   */
  async issue(userId: number, couponId: number): Promise<IssuedCoupon> {
    const now = this.clock();
    if (this.soldOut.isSoldOut(couponId, now)) throw new AppError("COUPON_SOLD_OUT");
    const out = await this.issuer.issue(couponId, userId, now);
    if (!out.ok) {
      if (out.code === "COUPON_SOLD_OUT") this.soldOut.remember(couponId, now);
      if (out.code === "SERVICE_UNAVAILABLE") throw new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
      throw new AppError(out.code);
    }
    // The DO evicts too once the D1 row exists (covering its write-behind path); this one keeps the
    // common path read-your-writes for the caller even before the DO's eviction lands.
    await this.cache.evict([userId]);
    return { userCouponId: out.userCouponId, couponId, userId, expiresAt: toIso(out.expiresAt) };
  }

  async listOwned(userId: number): Promise<{ userId: number; coupons: OwnedCoupon[] }> {
    const now = this.clock();
    // Read-through: a cached list implies the user exists; a miss reads D1 and fills the cache.
    // The generation read here guards the refill: an eviction in between makes `set` a no-op.
    const cached = await this.cache.get(userId);
    let rows = cached.rows;
    if (!rows) {
      if (!(await this.repo.userExists(userId))) throw new AppError("USER_NOT_FOUND");
      rows = await this.repo.listUserCoupons(userId);
      await this.cache.set(userId, rows, cached.generation);
    }
    return {
      userId,
      coupons: rows.map((r) => ({
        userCouponId: r.userCouponId,
        couponId: r.couponId,
        couponTitle: r.couponTitle,
        discountType: r.discountType,
        discountValue: r.discountValue,
        issuedAt: toIso(r.issuedAt),
        expiresAt: toIso(r.expiresAt),
        usedAt: toIsoOrNull(r.usedAt),
        status: userCouponStatus(r.usedAt, r.expiresAt, now),
      })),
    };
  }

  /**
   * Primes a just-created coupon's object (its one D1 load happens now, not on the
   * first issuance). Best effort: if the object is unreachable, the first issuance loads it.
   */
  async prime(couponId: number): Promise<void> {
    try {
      const out = await this.issuer.prime(couponId);
      if (out !== "ok") log("warn", "coupon issuer not primed", { couponId, out });
    } catch (err) {
      log("warn", "coupon issuer not primed", { couponId, ...errorFields(err) });
    }
  }

  /** Quantity changes go through the DO, which refuses to go below the issued count. */
  async setQuantity(couponId: number, quantity: number): Promise<{ couponId: number; quantity: number; issuedQuantity: number }> {
    if (!(await this.repo.findById(couponId))) throw new AppError("COUPON_NOT_FOUND");
    const out = await this.issuer.setQuantity(couponId, quantity);
    if (!out.ok) throw new AppError(out.code);
    this.soldOut.forget(couponId);
    return { couponId, quantity: out.quantity, issuedQuantity: out.issuedQuantity };
  }
}
