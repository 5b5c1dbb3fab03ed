import type { CouponRow } from "../coupons/coupons.repo";

/** A coupon as the admin list shows it: the coupon row without its validity days, with its creation time. */
export type AdminCouponRow = Omit<CouponRow, "validDays"> & { createdAt: number };

/** Wins of one coupon in one bucket of a time series (buckets without wins are not returned). */
export interface IssuanceBucketRow {
  /** The bucket's index: floor(issued_at / bucketMs). */
  bucket: number;
  issued: number;
}

export interface AdminProductRow {
  id: number;
  name: string;
  price: number;
  stock: number;
  stockShards: number;
  createdAt: number;
}

/**
 * The operator console's lists (newest first, ids below `beforeId`): each a range of the
 * table's primary key, so a page reads its own rows (plus one, to know whether another follows).
 */
export class AdminListsRepo {
  constructor(private readonly d1: D1Database) {}

  async coupons(beforeId: number, limit: number): Promise<AdminCouponRow[]> {
    const res = await this.d1
      .prepare(
        `SELECT id, name, discount_type AS discountType, discount_value AS discountValue, quantity, issued_quantity AS issuedQuantity,
                starts_at AS startsAt, ends_at AS endsAt, shards, created_at AS createdAt
         FROM coupons WHERE id < ?1 ORDER BY id DESC LIMIT ?2`,
      )
      .bind(beforeId, limit)
      .all<AdminCouponRow>();
    return res.results;
  }

  async products(beforeId: number, limit: number): Promise<AdminProductRow[]> {
    const res = await this.d1
      .prepare(
        `SELECT id, name, price, stock, stock_shards AS stockShards, created_at AS createdAt
         FROM products WHERE id < ?1 ORDER BY id DESC LIMIT ?2`,
      )
      .bind(beforeId, limit)
      .all<AdminProductRow>();
    return res.results;
  }

  /**
   * A coupon's wins per `bucketMs` in [from, to), oldest first: a range of `user_coupons_coupon_issued_idx`
   * (covering), so it reads one index entry per win in the span, whatever else the table holds.
   */
  async issuanceBuckets(couponId: number, from: number, to: number, bucketMs: number): Promise<IssuanceBucketRow[]> {
    const res = await this.d1
      .prepare(
        // D1 binds a JS number as REAL: the cast keeps the division an integer one (whole buckets).
        `SELECT issued_at / CAST(?4 AS INTEGER) AS bucket, count(*) AS issued
         FROM user_coupons WHERE coupon_id = ?1 AND issued_at >= ?2 AND issued_at < ?3
         GROUP BY 1 ORDER BY 1`,
      )
      .bind(couponId, from, to, bucketMs)
      .all<IssuanceBucketRow>();
    return res.results;
  }
}
