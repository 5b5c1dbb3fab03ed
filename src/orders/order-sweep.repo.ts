import type { OrderStatus } from "../db/schema";

/** A terminal order the sweeps hand to the stock objects: its status says sell (PAID) or release (the rest). */
export interface SweptOrder {
  id: number;
  status: OrderStatus;
  userId: number;
  userCouponId: number | null;
  /** Its lines: the product and the stock shard holding the line's reservation. */
  lines: { productId: number; shard: number }[];
}

/** Backoff of an order whose settlement failed: 1 min, 2, 4, ... capped at one hour. No attempt limit: stock is never stranded. */
export const SETTLE_BACKOFF_BASE_MS = 60_000;
export const SETTLE_BACKOFF_MAX_MS = 3_600_000;

const IDS = "(SELECT value FROM json_each(?1))";

/**
 * D1 side of the order sweeps, set-based: each method moves or reads up to
 * `limit` orders in one or two round trips whatever `limit` is, so a flash
 * sale's backlog costs a few D1 calls per cron run instead of several per order.
 * Ids travel as one JSON parameter (D1 allows 100 bound parameters a statement).
 */
export class OrderSweepRepo {
  constructor(private readonly d1: D1Database) {}

  /**
   * NOT_PAID orders past their deadline -> EXPIRED, with their coupons given back,
   * in one batch (two round trips: pick by `orders_status_expires_idx`, then the
   * batch). The flip is conditional on NOT_PAID and the deadline again, so a
   * payment or cancel that won meanwhile keeps its order; a coupon is given back
   * only while it still points at an order of this batch that is EXPIRED now, so a
   * coupon that another order re-used is never touched.
   *
   * Every row after the pick is reached by primary key: the picked orders by id, their
   * coupons through `orders.user_coupon_id` (placement sets it and `user_coupons.order_id`
   * together, so the pair matches exactly the coupons the orders used), never through
   * `user_coupons.order_id`, which has no index. The `+` on `status` and `expires_at`
   * keeps SQLite from reading every EXPIRED order (or every due one) through the status
   * index instead of the few ids it was given.
   */
  async expireDue(now: number, limit: number): Promise<SweptOrder[]> {
    const ids = await this.pick(
      "SELECT id FROM orders WHERE status = 'NOT_PAID' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
      now,
      limit,
    );
    if (ids.length === 0) return [];
    const json = JSON.stringify(ids);
    const [flipped, , items] = await this.d1.batch([
      this.d1
        .prepare(
          `UPDATE orders SET status = 'EXPIRED', updated_at = ?2 WHERE id IN ${IDS} AND +status = 'NOT_PAID' AND +expires_at <= ?2
           RETURNING id, user_id AS userId, user_coupon_id AS userCouponId`,
        )
        .bind(json, now),
      this.d1
        .prepare(
          `UPDATE user_coupons SET used_at = NULL, order_id = NULL
           FROM (SELECT id AS expired_id, user_coupon_id FROM orders WHERE id IN ${IDS} AND +status = 'EXPIRED') AS o
           WHERE user_coupons.id = o.user_coupon_id AND user_coupons.order_id = o.expired_id`,
        )
        .bind(json),
      this.itemsOf(json),
    ]);
    return this.assemble(flipped!.results as Omit<SweptOrder, "lines" | "status">[], items!.results as ItemRow[], "EXPIRED");
  }

  /**
   * PENDING placements older than `createdBefore` (their Worker died before the commit) -> FAILED; two round trips.
   * The pick reads the PENDING rows (placements in flight, never history); the flip reaches the picked ids by key.
   */
  async failStalePending(createdBefore: number, now: number, limit: number): Promise<SweptOrder[]> {
    const ids = await this.pick(
      "SELECT id FROM orders WHERE status = 'PENDING' AND created_at < ?1 ORDER BY id LIMIT ?2",
      createdBefore,
      limit,
    );
    if (ids.length === 0) return [];
    const json = JSON.stringify(ids);
    const [flipped, items] = await this.d1.batch([
      this.d1
        .prepare(
          `UPDATE orders SET status = 'FAILED', updated_at = ?2 WHERE id IN ${IDS} AND +status = 'PENDING' RETURNING id, user_id AS userId, user_coupon_id AS userCouponId`,
        )
        .bind(json, now),
      this.itemsOf(json),
    ]);
    return this.assemble(flipped!.results as Omit<SweptOrder, "lines" | "status">[], items!.results as ItemRow[], "FAILED");
  }

  /**
   * Terminal orders whose stock objects were not told yet, untouched since
   * `touchedBefore` (in-flight requests settle their own) and due by their backoff,
   * oldest next-attempt first. One round trip, read through the partial index
   * `orders_unsettled_idx`, named with INDEXED BY (without table statistics SQLite
   * prefers the status index and sorts; its WHERE is repeated here word for word, or the
   * partial index would not apply); no age cut-off, so an order whose object was down for days
   * is still settled, and one that keeps failing waits its backoff behind the others.
   */
  async listUnsettled(now: number, touchedBefore: number, limit: number): Promise<SweptOrder[]> {
    const rows = await this.d1
      .prepare(
        `WITH due AS (
           SELECT id, status, user_id, user_coupon_id FROM orders INDEXED BY orders_unsettled_idx
           WHERE status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND closed_at IS NULL AND settle_after <= ?1 AND updated_at < ?2
           ORDER BY settle_after, id LIMIT ?3)
         SELECT due.id, due.status, due.user_id AS userId, due.user_coupon_id AS userCouponId, i.product_id AS productId, i.stock_shard AS shard
         FROM due JOIN order_items i ON i.order_id = due.id ORDER BY due.id`,
      )
      .bind(now, touchedBefore, limit)
      .all<{ id: number; status: OrderStatus; userId: number; userCouponId: number | null; productId: number; shard: number }>();
    const byId = new Map<number, SweptOrder>();
    for (const r of rows.results) {
      const o = byId.get(r.id) ?? { id: r.id, status: r.status, userId: r.userId, userCouponId: r.userCouponId, lines: [] };
      o.lines.push({ productId: r.productId, shard: r.shard });
      byId.set(r.id, o);
    }
    return [...byId.values()];
  }

  /** Records the outcome of a settlement round in one batch: `closed_at` for the done, backoff for the rest. */
  async recordSettlement(settled: number[], retry: number[], now: number): Promise<void> {
    const stmts: D1PreparedStatement[] = [];
    if (settled.length > 0) {
      stmts.push(
        this.d1.prepare(`UPDATE orders SET closed_at = ?2 WHERE id IN ${IDS} AND closed_at IS NULL`).bind(JSON.stringify(settled), now),
      );
    }
    if (retry.length > 0) {
      stmts.push(
        this.d1
          .prepare(
            `UPDATE orders SET settle_attempts = settle_attempts + 1,
               settle_after = ?2 + min(?4, ?3 * (1 << min(settle_attempts, 6)))
             WHERE id IN ${IDS} AND closed_at IS NULL`,
          )
          .bind(JSON.stringify(retry), now, SETTLE_BACKOFF_BASE_MS, SETTLE_BACKOFF_MAX_MS),
      );
    }
    if (stmts.length > 0) await this.d1.batch(stmts);
  }

  /** Picks candidate ids (protected: tests interleave a racing writer between the pick and the flip). */
  protected async pick(sql: string, bound: number, limit: number): Promise<number[]> {
    return (await this.d1.prepare(sql).bind(bound, limit).all<{ id: number }>()).results.map((r) => r.id);
  }

  private itemsOf(json: string): D1PreparedStatement {
    return this.d1
      .prepare(`SELECT order_id AS orderId, product_id AS productId, stock_shard AS shard FROM order_items WHERE order_id IN ${IDS}`)
      .bind(json);
  }

  private assemble(flipped: Omit<SweptOrder, "lines" | "status">[], items: ItemRow[], status: OrderStatus): SweptOrder[] {
    const lines = new Map<number, SweptOrder["lines"]>();
    for (const i of items) lines.set(i.orderId, [...(lines.get(i.orderId) ?? []), { productId: i.productId, shard: i.shard }]);
    return flipped.map((o) => ({ ...o, status, lines: lines.get(o.id) ?? [] }));
  }
}

type ItemRow = { orderId: number; productId: number; shard: number };
