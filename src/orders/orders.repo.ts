import { constraintFailed } from "../db/client";
import type { DiscountType, OrderStatus } from "../db/schema";

export interface OrderRow {
  id: number;
  userId: number;
  userCouponId: number | null;
  status: OrderStatus;
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
  createdAt: number;
  expiresAt: number;
  paidAt: number | null;
  closedAt: number | null;
}

export interface OrderItemRow {
  productId: number;
  quantity: number;
  unitPrice: number;
  amount: number;
}

export interface UserCouponRow {
  id: number;
  userId: number;
  issuedAt: number;
  expiresAt: number;
  usedAt: number | null;
  orderId: number | null;
  startsAt: number;
  discountType: DiscountType;
  discountValue: number;
}

export interface NewOrder {
  userId: number;
  userCouponId: number | null;
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
  items: OrderItemRow[];
}

const ORDER_COLUMNS = `id, user_id AS userId, user_coupon_id AS userCouponId, status, items_amount AS itemsAmount,
  discount_amount AS discountAmount, total_amount AS totalAmount, created_at AS createdAt, expires_at AS expiresAt,
  paid_at AS paidAt, closed_at AS closedAt`;

/** Terminal statuses whose DO side (sell/release) may still be pending while `closed_at` is NULL. */
export const SETTLE_STATUSES = ["PAID", "EXPIRED", "CANCELLED", "FAILED"] as const;

/**
 * D1 access for orders. Every state change is a conditional UPDATE on the
 * expected status, so racing writers (payment, expiry, cancel, cleanup)
 * cannot both win. `closed_at` NULL on a terminal order means "the stock DOs
 * have not been told yet"; the cron settles such orders after a crash.
 */
export class OrdersRepo {
  constructor(private readonly d1: D1Database) {}

  async userExists(userId: number): Promise<boolean> {
    return (await this.d1.prepare("SELECT 1 AS x FROM users WHERE id = ?").bind(userId).first()) !== null;
  }

  async findProducts(ids: number[]): Promise<{ id: number; price: number }[]> {
    const marks = ids.map(() => "?").join(",");
    const rows = await this.d1.prepare(`SELECT id, price FROM products WHERE id IN (${marks})`).bind(...ids).all<{ id: number; price: number }>();
    return rows.results;
  }

  async findUserCoupon(id: number): Promise<UserCouponRow | undefined> {
    const row = await this.d1
      .prepare(
        `SELECT uc.id, uc.user_id AS userId, uc.issued_at AS issuedAt, uc.expires_at AS expiresAt, uc.used_at AS usedAt,
                uc.order_id AS orderId, c.starts_at AS startsAt, c.discount_type AS discountType, c.discount_value AS discountValue
         FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = ?`,
      )
      .bind(id)
      .first<UserCouponRow>();
    return row ?? undefined;
  }

  /**
   * Inserts the order as PENDING with its items in one batch (so it never
   * exists without its lines) and returns the id the reservations are keyed by.
   * Items find their order as the user's newest order: inside the batch
   * transaction nobody else can insert in between.
   */
  async insertPending(order: NewOrder, now: number, provisionalExpiresAt: number): Promise<number> {
    const stmts = [
      this.d1
        .prepare(
          `INSERT INTO orders (user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at)
           VALUES (?1, ?2, 'PENDING', ?3, ?4, ?5, ?6, ?7, ?6) RETURNING id`,
        )
        .bind(order.userId, order.userCouponId, order.itemsAmount, order.discountAmount, order.totalAmount, now, provisionalExpiresAt),
      ...order.items.map((i) =>
        this.d1
          .prepare(
            `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount)
             SELECT max(id), ?2, ?3, ?4, ?5 FROM orders WHERE user_id = ?1`,
          )
          .bind(order.userId, i.productId, i.quantity, i.unitPrice, i.amount),
      ),
    ];
    const [inserted] = await this.d1.batch<{ id: number }>(stmts);
    const id = inserted?.results[0]?.id;
    if (id === undefined) throw new Error("insertPending: no id returned");
    return id;
  }

  /**
   * The commit point of placement, one batch: use the coupon (owned, unused,
   * unexpired) and move the order PENDING -> NOT_PAID. A failed precondition
   * inserts a row that violates `batch_guards`' CHECK, aborting everything.
   */
  async commitPlacement(
    orderId: number,
    userId: number,
    userCouponId: number | null,
    now: number,
    expiresAt: number,
  ): Promise<{ ok: true } | { ok: false }> {
    const stmts: D1PreparedStatement[] = [];
    if (userCouponId !== null) {
      stmts.push(
        this.d1
          .prepare(
            `UPDATE user_coupons SET used_at = ?1, order_id = ?2
             WHERE id = ?3 AND user_id = ?4 AND used_at IS NULL AND expires_at > ?1 AND issued_at <= ?1`,
          )
          .bind(now, orderId, userCouponId, userId),
        this.d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'coupon' WHERE changes() = 0"),
      );
    }
    stmts.push(
      this.d1
        .prepare("UPDATE orders SET status = 'NOT_PAID', expires_at = ?1, updated_at = ?2 WHERE id = ?3 AND status = 'PENDING'")
        .bind(expiresAt, now, orderId),
      this.d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'order' WHERE changes() = 0"),
    );
    try {
      await this.d1.batch(stmts);
      return { ok: true };
    } catch (err) {
      if (constraintFailed(err, "batch_guards_ok")) return { ok: false };
      throw err;
    }
  }

  /**
   * PENDING -> FAILED for a placement that did not commit (or died). Its
   * `closed_at` stays NULL until the DOs released the stock.
   */
  async markFailed(orderId: number, now: number): Promise<boolean> {
    const res = await this.d1
      .prepare("UPDATE orders SET status = 'FAILED', updated_at = ?1 WHERE id = ?2 AND status = 'PENDING'")
      .bind(now, orderId)
      .run();
    return res.meta.changes > 0;
  }

  async findOrder(orderId: number): Promise<OrderRow | undefined> {
    const row = await this.d1.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ?`).bind(orderId).first<OrderRow>();
    return row ?? undefined;
  }

  async findItems(orderId: number): Promise<OrderItemRow[]> {
    const rows = await this.d1
      .prepare(
        `SELECT product_id AS productId, quantity, unit_price AS unitPrice, amount
         FROM order_items WHERE order_id = ? ORDER BY product_id`,
      )
      .bind(orderId)
      .all<OrderItemRow>();
    return rows.results;
  }

  /**
   * NOT_PAID -> EXPIRED/CANCELLED and the coupon given back, in one batch.
   * The status condition makes exactly one of payment, expiry and cancel win;
   * `closed_at` stays NULL until the DOs have released the stock.
   * Returns whether this call made the move.
   */
  async closeUnpaid(
    orderId: number,
    to: "EXPIRED" | "CANCELLED",
    now: number,
    guard: { userId?: number; expiredBy?: number; notExpiredAt?: number },
  ): Promise<boolean> {
    const conds = ["id = ?2", "status = 'NOT_PAID'"];
    const binds: unknown[] = [to, orderId, now];
    if (guard.userId !== undefined) {
      binds.push(guard.userId);
      conds.push(`user_id = ?${binds.length}`);
    }
    if (guard.expiredBy !== undefined) {
      binds.push(guard.expiredBy);
      conds.push(`expires_at <= ?${binds.length}`);
    }
    if (guard.notExpiredAt !== undefined) {
      binds.push(guard.notExpiredAt);
      conds.push(`expires_at > ?${binds.length}`);
    }
    const [flip] = await this.d1.batch([
      this.d1.prepare(`UPDATE orders SET status = ?1, updated_at = ?3 WHERE ${conds.join(" AND ")} RETURNING id`).bind(...binds),
      this.d1
        .prepare(
          `UPDATE user_coupons SET used_at = NULL, order_id = NULL
           WHERE order_id = ?1 AND id = (SELECT user_coupon_id FROM orders WHERE id = ?1 AND status = ?2)`,
        )
        .bind(orderId, to),
    ]);
    return (flip?.results.length ?? 0) > 0;
  }

  /** Records that the DOs were told (sold or released). */
  async markSettled(orderId: number, now: number): Promise<void> {
    await this.d1.prepare("UPDATE orders SET closed_at = ?1 WHERE id = ?2 AND closed_at IS NULL").bind(now, orderId).run();
  }

  async listExpirable(now: number, limit: number): Promise<number[]> {
    const rows = await this.d1
      .prepare("SELECT id FROM orders WHERE status = 'NOT_PAID' AND expires_at <= ? ORDER BY expires_at LIMIT ?")
      .bind(now, limit)
      .all<{ id: number }>();
    return rows.results.map((r) => r.id);
  }

  /**
   * Deletes up to `limit` FAILED placement attempts (and their items) last touched before
   * `before` whose DO side is settled (`closed_at` set). They never were orders a user saw;
   * keeping them forever only grows the table. One batch: items first (foreign key), then orders.
   */
  async purgeFailed(before: number, limit: number): Promise<number> {
    const pick = `SELECT id FROM orders WHERE status = 'FAILED' AND closed_at IS NOT NULL AND updated_at < ?1 ORDER BY id LIMIT ?2`;
    const [, deleted] = await this.d1.batch([
      this.d1.prepare(`DELETE FROM order_items WHERE order_id IN (${pick})`).bind(before, limit),
      this.d1.prepare(`DELETE FROM orders WHERE id IN (${pick})`).bind(before, limit),
    ]);
    return deleted?.meta.changes ?? 0;
  }

  async listStalePending(createdBefore: number, limit: number): Promise<number[]> {
    const rows = await this.d1
      .prepare("SELECT id FROM orders WHERE status = 'PENDING' AND created_at < ? ORDER BY id LIMIT ?")
      .bind(createdBefore, limit)
      .all<{ id: number }>();
    return rows.results.map((r) => r.id);
  }

  /**
   * Terminal orders whose DO side is still open and that nobody touched since
   * `before`. Only orders whose payment window ended after `horizon` are
   * looked at, so the scan is an index range on (status, expires_at) instead
   * of every order ever closed.
   */
  async listUnsettled(before: number, horizon: number, limit: number): Promise<{ id: number; status: OrderStatus }[]> {
    const rows = await this.d1
      .prepare(
        `SELECT id, status FROM orders
         WHERE status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND expires_at > ?1 AND closed_at IS NULL AND updated_at < ?2
         ORDER BY id LIMIT ?3`,
      )
      .bind(horizon, before, limit)
      .all<{ id: number; status: OrderStatus }>();
    return rows.results;
  }
}
