import { toIso, toIsoOrNull } from "../shared/clock";
import { AppError } from "../shared/errors";
import { errorFields, log } from "../shared/logger";
import type { IssuerState } from "./coupon-issuer.types";
import type { CouponIssuerPort } from "./coupon-issuer.client";
import { couponAvailability, userCouponStatus, type CouponAvailabilityStatus, type UserCouponStatus } from "./coupon.rules";
import type { CouponsRepo, NewCoupon } from "./coupons.repo";
import type { UserCouponCache } from "./user-coupon.cache";
import { isolateSoldOut, type SoldOutMemo } from "./sold-out";
import { decodeCursor, encodeCursor } from "../shared/cursor";
import { OWNED_COUPONS_PAGE } from "./coupons.schemas";
import { noMetrics, type Metrics } from "../shared/metrics";

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

/** A coupon as a sale page shows it (GET /coupons/{couponId}). */
export interface CouponAvailability {
  couponId: number;
  couponTitle: string;
  discountType: "RATE" | "AMOUNT";
  discountValue: number;
  quantity: number;
  issued: number;
  remaining: number;
  startsAt: string;
  endsAt: string;
  status: CouponAvailabilityStatus;
}

/** Coupon use cases: first-come issuance, the owner's list, quantity changes. */
/** What CouponsService is built from (named, so the composition root reads without this file open). */
export interface CouponsServiceDeps {
  repo: CouponsRepo;
  /** The CouponIssuer shards (src/coupons/coupon-issuer.client.ts). */
  issuer: CouponIssuerPort;
  clock: () => number;
  /** Owned-coupon lists (Redis, or none). */
  cache: UserCouponCache;
  /** This isolate's sold-out memory (default: the isolate's one). */
  soldOut?: SoldOutMemo;
  /** Issuances and sold-out refusals, for the operator's charts (src/shared/metrics.ts). */
  metrics?: Metrics;
}

export class CouponsService {
  private readonly repo: CouponsRepo;
  private readonly issuer: CouponIssuerPort;
  private readonly clock: () => number;
  private readonly cache: UserCouponCache;
  private readonly soldOut: SoldOutMemo;
  private readonly metrics: Metrics;

  constructor(deps: CouponsServiceDeps) {
    this.repo = deps.repo;
    this.issuer = deps.issuer;
    this.clock = deps.clock;
    this.cache = deps.cache;
    this.soldOut = deps.soldOut ?? isolateSoldOut;
    this.metrics = deps.metrics ?? noMetrics;
  }

  /**
   * One round trip for a refusal, two for a win (the DO decides, then writes the
   * D1 row, which also proves the user exists), none while this isolate knows
   * the coupon is sold out. `requestKey` (the request's Idempotency-Key) makes a twin of
   * an issuance under the same key answer that issuance (or "in progress" while it is
   * being written), never a refusal of its own. Because the DO decides before D1 is asked, a sold-out,
   * closed or already-owned coupon is refused before the user is looked up
   * (docs/ARCHITECTURE.md §3: coupon issuance).
   */
  async issue(userId: number, couponId: number, requestKey?: string): Promise<IssuedCoupon> {
    const now = this.clock();
    if (this.soldOut.isSoldOut(couponId, now)) throw new AppError("COUPON_SOLD_OUT");
    const out = await this.issuer.issue({ couponId, userId, now, requestKey });
    if (!out.ok) {
      if (out.code === "COUPON_SOLD_OUT") {
        this.soldOut.remember(couponId, now);
        this.metrics.event("coupon.sold_out", couponId);
      }
      if (out.code === "SERVICE_UNAVAILABLE" || out.code === "IDEMPOTENCY_KEY_IN_PROGRESS")
        throw new AppError(out.code, undefined, { "Retry-After": "1" });
      throw new AppError(out.code);
    }
    this.metrics.event("coupon.issued", couponId);
    // The DO evicts too once the D1 row exists (covering its write-behind path); this one keeps the
    // common path read-your-writes for the caller even before the DO's eviction lands.
    await this.cache.evict([userId]);
    return { userCouponId: out.userCouponId, couponId, userId, expiresAt: toIso(out.expiresAt) };
  }

  /**
   * A page of the user's coupons (oldest first). The first page at the default size is
   * read through the owned-coupon cache; other pages go to D1. Each page reads one row
   * more than it answers, to know whether another follows.
   */
  async listOwned(
    userId: number,
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ userId: number; coupons: OwnedCoupon[]; nextCursor: string | null }> {
    const now = this.clock();
    const limit = page.limit ?? OWNED_COUPONS_PAGE;
    const afterId = decodeCursor(page.cursor, "uc");
    const cacheable = afterId === 0 && limit === OWNED_COUPONS_PAGE;
    // Read-through: a cached list implies the user exists; a miss reads D1 and fills the cache.
    // The generation read here guards the refill: an eviction in between makes `set` a no-op.
    const cached = cacheable ? await this.cache.get(userId) : { rows: undefined, generation: undefined };
    let rows = cached.rows;
    if (!rows) {
      if (!(await this.repo.userExists(userId))) throw new AppError("USER_NOT_FOUND");
      rows = await this.repo.listUserCoupons(userId, afterId, limit + 1);
      if (cacheable) await this.cache.set(userId, rows, cached.generation);
    }
    const more = rows.length > limit;
    rows = rows.slice(0, limit);
    const last = rows[rows.length - 1];
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
      nextCursor: more && last ? encodeCursor(last.userCouponId, "uc") : null,
    };
  }

  /** Creates a coupon (its D1 row) and primes its shards, so no issuance waits for their first load. */
  async create(input: NewCoupon): Promise<number> {
    const couponId = await this.repo.create(input, this.clock());
    await this.prime(couponId);
    return couponId;
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
    const coupon = await this.repo.findById(couponId);
    if (!coupon) throw new AppError("COUPON_NOT_FOUND");
    const out = await this.issuer.setQuantity(couponId, quantity);
    // INTERNAL_ERROR: D1 could not take a raise (nothing changed) or the siblings could not be reached for a cut: retry.
    if (!out.ok)
      throw out.code === "INTERNAL_ERROR" ? new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" }) : new AppError(out.code);
    this.soldOut.forget(couponId);
    // Shard 0 knows its own issuances only; D1 counts every shard's (each win is in D1 before it is answered).
    const issuedQuantity =
      coupon.shards > 1 ? ((await this.repo.findById(couponId))?.issuedQuantity ?? out.issuedQuantity) : out.issuedQuantity;
    return { couponId, quantity: out.quantity, issuedQuantity };
  }

  /**
   * Raises a coupon's shard count (docs/ARCHITECTURE.md §9). Only before the window opens and
   * while nothing is issued (a user's home shard must never change after they
   * could have got the coupon); never down. D1 is written first, so a shard that
   * loads from now on serves under the new count; then every shard is told, shard
   * 0 (the authority the Worker learns the count from) last. A call for the count
   * D1 already holds still tells every shard (a shard already at it answers ok): so
   * a raise that failed part-way (D1 written, shard 0 not) is finished by retrying
   * the same call, instead of being answered 200 with shard 0 on the old count.
   */
  async setShards(couponId: number, shards: number): Promise<{ couponId: number; shards: number }> {
    const now = this.clock();
    const coupon = await this.repo.findById(couponId);
    if (!coupon) throw new AppError("COUPON_NOT_FOUND");
    if (shards < coupon.shards) throw new AppError("COUPON_SHARDS_LOCKED", "쿠폰 샤드 수는 늘릴 수만 있습니다.");
    if (shards > coupon.shards) {
      if (now >= coupon.startsAt || coupon.issuedQuantity > 0) {
        throw new AppError("COUPON_SHARDS_LOCKED", "발급 기간이 시작되었거나 이미 발급된 쿠폰은 샤드 수를 바꿀 수 없습니다.");
      }
      await this.repo.setShards(couponId, shards);
    }
    const out = await this.issuer.setShards(couponId, shards, now);
    if (!out.ok) throw new AppError(out.code === "INTERNAL_ERROR" ? "SERVICE_UNAVAILABLE" : out.code, undefined, { "Retry-After": "1" });
    if (shards > 1) await this.prime(couponId);
    return { couponId, shards };
  }

  /**
   * How much of a coupon is left, from the issuing objects (each win is counted there before it is
   * answered): the definition from D1, then one parallel fan-out over its K shards for their issued
   * counts. Shard 0's quantity wins over D1's (a quantity change reaches D1 after the object).
   * `issued + remaining = quantity` in every answer; the route is edge-cached for a second.
   */
  async availability(couponId: number): Promise<CouponAvailability> {
    const coupon = await this.repo.findById(couponId);
    if (!coupon) throw new AppError("COUPON_NOT_FOUND");
    const counts = await this.issuer.shardCounts(couponId, coupon.shards);
    const quantity = counts[0]?.loaded ? counts[0].quantity : coupon.quantity;
    const issued = Math.min(
      quantity,
      counts.reduce((n, c) => n + c.issued, 0),
    );
    const { remaining, status } = couponAvailability({ quantity, issued, startsAt: coupon.startsAt, endsAt: coupon.endsAt }, this.clock());
    return {
      couponId,
      couponTitle: coupon.name,
      discountType: coupon.discountType,
      discountValue: coupon.discountValue,
      quantity,
      issued,
      remaining,
      startsAt: toIso(coupon.startsAt),
      endsAt: toIso(coupon.endsAt),
      status,
    };
  }

  /** Per-shard units, issuances and open transfers (admin view). */
  async shardStates(
    couponId: number,
  ): Promise<{ couponId: number; shards: number; quantity: number; issued: number; free: number; perShard: IssuerState[] }> {
    const coupon = await this.repo.findById(couponId);
    if (!coupon) throw new AppError("COUPON_NOT_FOUND");
    const perShard = await this.issuer.shardStates(couponId, coupon.shards);
    const issued = perShard.reduce((n, s) => n + s.issued, 0);
    const free = perShard.reduce((n, s) => n + (s.held - s.issued), 0);
    return { couponId, shards: coupon.shards, quantity: coupon.quantity, issued, free, perShard };
  }
}
