import type { Env } from "../env";
import { toIso, toIsoOrNull } from "../shared/clock";
import { AppError } from "../shared/errors";
import type { IssueOutcome, SetQuantityOutcome } from "./coupon-issuer.do";
import { userCouponStatus, type UserCouponStatus } from "./coupon.rules";
import type { CouponsRepo } from "./coupons.repo";
import type { UserCouponCache } from "./user-coupon.cache";

/** The port to the per-coupon serializer (the CouponIssuer DO in production). */
export interface CouponIssuerPort {
  issue(couponId: number, userId: number, now: number): Promise<IssueOutcome>;
  setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome>;
}

/** Adapter: one CouponIssuer DO per coupon, addressed by the coupon id. */
export function couponIssuerClient(ns: Env["COUPON_ISSUER"]): CouponIssuerPort {
  const stub = (couponId: number) => ns.get(ns.idFromName(String(couponId)));
  return {
    issue: (couponId, userId, now) => stub(couponId).issue(couponId, userId, now) as Promise<IssueOutcome>,
    setQuantity: (couponId, quantity) => stub(couponId).setQuantity(couponId, quantity) as Promise<SetQuantityOutcome>,
  };
}

export interface IssuedCoupon {
  userCouponId: number | null;
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
  ) {}

  /**
   * Existence is checked in D1 first (so unknown ids never create a DO); the
   * DO then decides and persists, and writes the D1 row itself.
   */
  async issue(userId: number, couponId: number): Promise<IssuedCoupon> {
    const found = await this.repo.findUserAndCoupon(userId, couponId);
    if (!found.user) throw new AppError("USER_NOT_FOUND");
    if (!found.coupon) throw new AppError("COUPON_NOT_FOUND");
    const out = await this.issuer.issue(couponId, userId, this.clock());
    if (!out.ok) throw new AppError(out.code);
    // The DO evicts too once the D1 row exists (covering its write-behind path); this one keeps the
    // common path read-your-writes for the caller even before the DO's eviction lands.
    await this.cache.evict([userId]);
    return { userCouponId: out.userCouponId, couponId, userId, expiresAt: toIso(out.expiresAt) };
  }

  async listOwned(userId: number): Promise<{ userId: number; coupons: OwnedCoupon[] }> {
    const now = this.clock();
    // Read-through: a cached list implies the user exists; a miss reads D1 and fills the cache.
    let rows = await this.cache.get(userId);
    if (!rows) {
      if (!(await this.repo.userExists(userId))) throw new AppError("USER_NOT_FOUND");
      rows = await this.repo.listUserCoupons(userId);
      await this.cache.set(userId, rows);
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

  /** Quantity changes go through the DO, which refuses to go below the issued count. */
  async setQuantity(couponId: number, quantity: number): Promise<{ couponId: number; quantity: number; issuedQuantity: number }> {
    if (!(await this.repo.findById(couponId))) throw new AppError("COUPON_NOT_FOUND");
    const out = await this.issuer.setQuantity(couponId, quantity);
    if (!out.ok) throw new AppError(out.code);
    return { couponId, quantity: out.quantity, issuedQuantity: out.issuedQuantity };
  }
}
