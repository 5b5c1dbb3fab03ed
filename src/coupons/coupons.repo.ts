import { eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { coupons, type DiscountType } from "../db/schema";

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
}

export interface NewCoupon {
  name: string;
  discountType: DiscountType;
  discountValue: number;
  quantity: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
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
      })
      .from(coupons)
      .where(eq(coupons.id, id))
      .get();
  }
}
