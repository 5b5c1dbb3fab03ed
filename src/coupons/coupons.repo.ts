import { and, asc, eq, gt } from "drizzle-orm";
import type { Db } from "../db/client";
import { coupons, userCoupons, users, type DiscountType } from "../db/schema";

export interface CouponRow {
  id: number;
  name: string;
  discountType: DiscountType;
  discountValue: number;
  quantity: number;
  issuedQuantity: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
  shards: number;
}

/** A user coupon joined with its coupon definition, as the owner's list shows it. */
export interface UserCouponRow {
  userCouponId: number;
  couponId: number;
  couponTitle: string;
  discountType: DiscountType;
  discountValue: number;
  issuedAt: number;
  expiresAt: number;
  usedAt: number | null;
}

export interface NewCoupon {
  name: string;
  discountType: DiscountType;
  discountValue: number;
  quantity: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
  /** CouponIssuer shards (docs/ARCHITECTURE.md §9); default 1. */
  shards?: number;
}

/** D1 access for coupon definitions. */
export class CouponsRepo {
  constructor(private readonly db: Db) {}

  async create(input: NewCoupon, at: number): Promise<number> {
    const row = await this.db
      .insert(coupons)
      .values({ ...input, issuedQuantity: 0, createdAt: at })
      .returning({ id: coupons.id })
      .get();
    return row.id;
  }

  async findById(id: number): Promise<CouponRow | undefined> {
    return this.db
      .select({
        id: coupons.id,
        name: coupons.name,
        discountType: coupons.discountType,
        discountValue: coupons.discountValue,
        quantity: coupons.quantity,
        issuedQuantity: coupons.issuedQuantity,
        startsAt: coupons.startsAt,
        endsAt: coupons.endsAt,
        validDays: coupons.validDays,
        shards: coupons.shards,
      })
      .from(coupons)
      .where(eq(coupons.id, id))
      .get();
  }

  /** Writes the shard count shards load from D1 (before the objects are told: see CouponsService.setShards). */
  async setShards(id: number, shards: number): Promise<void> {
    await this.db.update(coupons).set({ shards }).where(eq(coupons.id, id)).run();
  }

  async userExists(userId: number): Promise<boolean> {
    const row = await this.db.select({ id: users.id }).from(users).where(eq(users.id, userId)).get();
    return row !== undefined;
  }

  /**
   * Up to `limit` of the user's coupons after user coupon `afterId`, oldest issuance
   * (lowest id) first: a range of the user's rows by id (user_coupons_user_id_idx),
   * so a page reads its own rows however many coupons the user collected before.
   */
  async listUserCoupons(userId: number, afterId = 0, limit = 101): Promise<UserCouponRow[]> {
    return this.db
      .select({
        userCouponId: userCoupons.id,
        couponId: userCoupons.couponId,
        couponTitle: coupons.name,
        discountType: coupons.discountType,
        discountValue: coupons.discountValue,
        issuedAt: userCoupons.issuedAt,
        expiresAt: userCoupons.expiresAt,
        usedAt: userCoupons.usedAt,
      })
      .from(userCoupons)
      .innerJoin(coupons, eq(coupons.id, userCoupons.couponId))
      .where(and(eq(userCoupons.userId, userId), gt(userCoupons.id, afterId)))
      .orderBy(asc(userCoupons.id))
      .limit(limit)
      .all();
  }
}
