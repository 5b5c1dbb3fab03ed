import { keyStatements, type KeyClaim } from "../shared/idempotency";
import { aloneOn, type WriteBatcher } from "../shared/write-batches";
import type { DiscountType, OrderStatus } from "../db/schema";
import type { Amounts } from "./order.rules";

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

/** A line with the product stock shard that holds its reservation (sold or released there). */
export interface StockLine {
  productId: number;
  stockShard: number;
}

/** A line as placement records it: where it reserves, and the product's shard count K then. */
export interface PlacedLine extends OrderItemRow, StockLine {
  stockShards: number;
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

/** A line of an order in the user's list: the product's current name with the price snapshot. */
export interface ListedItemRow {
  orderId: number;
  productId: number;
  productName: string;
  quantity: number;
  unitPrice: number;
}

/**
 * Which of a user's orders a list page holds, by the status the client sees (order.rules.ts
 * effectiveStatus): each arm is one index range, newest first. `ALL` is every public status on
 * orders_user_id_idx (user_id, id), named with INDEXED BY: without table statistics SQLite may
 * take orders_user_status_idx for the IN list and sort the user's whole history. A status is a
 * range of orders_user_status_idx (user_id, status, id); EXPIRED is two (swept, and unpaid past
 * the deadline but not yet swept), merged: a page reads at most two pages of rows.
 */
export type OrderListFilter = "ALL" | "NOT_PAID" | "PAID" | "EXPIRED" | "CANCELLED";

const LIST_ARMS: Record<OrderListFilter, string[]> = {
  ALL: ["INDEXED BY orders_user_id_idx WHERE user_id = ?1 AND id < ?2 AND status IN ('NOT_PAID','PAID','EXPIRED','CANCELLED')"],
  NOT_PAID: ["WHERE user_id = ?1 AND status = 'NOT_PAID' AND id < ?2 AND expires_at > ?4"],
  PAID: ["WHERE user_id = ?1 AND status = 'PAID' AND id < ?2"],
  CANCELLED: ["WHERE user_id = ?1 AND status = 'CANCELLED' AND id < ?2"],
  EXPIRED: [
    "WHERE user_id = ?1 AND status = 'EXPIRED' AND id < ?2",
    "WHERE user_id = ?1 AND status = 'NOT_PAID' AND id < ?2 AND expires_at <= ?4",
  ],
};

/** The page's orders (columns `cols`), newest first: `?1` user, `?2` before id, `?3` limit, `?4` now. */
function listPageSql(filter: OrderListFilter, cols: string): string {
  const arms = LIST_ARMS[filter].map((where) => `SELECT * FROM (SELECT ${cols} FROM orders ${where} ORDER BY id DESC LIMIT ?3)`);
  return `${arms.join(" UNION ALL ")} ORDER BY id DESC LIMIT ?3`;
}

const ORDER_COLUMNS = `id, user_id AS userId, user_coupon_id AS userCouponId, status, items_amount AS itemsAmount,
  discount_amount AS discountAmount, total_amount AS totalAmount, created_at AS createdAt, expires_at AS expiresAt,
  paid_at AS paidAt, closed_at AS closedAt`;

/**
 * D1 access for orders. Every state change is a conditional UPDATE on the
 * expected status, so racing writers (payment, expiry, cancel, cleanup)
 * cannot both win. `closed_at` NULL on a terminal order means "the stock DOs
 * have not been told yet"; the cron settles such orders after a crash.
 */
export class OrdersRepo {
  constructor(
    private readonly d1: D1Database,
    /** Where the attempt and commit batches go: shared with concurrent placements per request (services), alone by default. */
    private readonly writes: WriteBatcher = aloneOn(d1),
  ) {}

  /**
   * Placement's first round trip: one batch that validates the user, every
   * product and the user coupon (owned, unused, inside its window) and records
   * the attempt as a PENDING order with its priced lines, so the reservations
   * that follow are keyed by an order that exists. Amounts stay 0 until the
   * commit sets them (the discount rule lives in order.rules.ts). The batch is
   * shared with the isolate's concurrent placements (src/shared/group-commit.ts),
   * so nothing aborts it: the order is inserted only when everything is valid (and
   * the request's Idempotency-Key is not already used), its lines only when the
   * order was (`changes()`), and a refusal is `{ ok: false }` with nothing written.
   */
  async recordAttempt(
    input: { userId: number; userCouponId: number | null; lines: { productId: number; quantity: number }[] },
    now: number,
    provisionalExpiresAt: number,
    claim?: KeyClaim,
  ): Promise<
    | { ok: true; orderId: number; items: PlacedLine[]; coupon: { discountType: DiscountType; discountValue: number } | undefined }
    | { ok: false }
  > {
    const d1 = this.d1;
    const lines = JSON.stringify(input.lines.map((l) => ({ p: l.productId, q: l.quantity })));
    // A key that already holds an answer (or a live claim an earlier version left) refuses the attempt.
    // The attempt carries the key (`twinInFlight` finds it while it is PENDING).
    const keyFree = claim
      ? `AND NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE user_id = ?6 AND key = ?7 AND expires_at > ?8 AND NOT (status_code IS NULL AND created_at <= ?9))`
      : "";
    const keyBinds = claim ? [claim.userId, claim.key, claim.now, claim.staleBefore] : [];
    const stmts: D1PreparedStatement[] = [
      d1
        .prepare(
          `INSERT INTO orders (user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at, idempotency_key)
           SELECT ?1, ?2, 'PENDING', 0, 0, 0, ?3, ?4, ?3, ${claim ? "?7" : "NULL"}
           WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
             AND (SELECT count(*) FROM products WHERE id IN (SELECT json_extract(value, '$.p') FROM json_each(?5))) = json_array_length(?5)
             AND (?2 IS NULL OR EXISTS (
               SELECT 1 FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id
               WHERE uc.id = ?2 AND uc.user_id = ?1 AND uc.used_at IS NULL
                 AND ?3 < uc.expires_at AND ?3 >= uc.issued_at AND ?3 >= c.starts_at))
             ${keyFree}`,
        )
        .bind(input.userId, input.userCouponId, now, provisionalExpiresAt, lines, ...keyBinds),
      // The order just inserted (changes(): the INSERT just before) is this user's newest: the
      // requests sharing the batch run one after another. Each line reserves on stock shard
      // `order id % K` (orderShard in src/sharding/routing.ts), stored on it.
      d1
        .prepare(
          `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount, stock_shard)
           SELECT o.id, p.id, json_extract(l.value, '$.q'), p.price, p.price * json_extract(l.value, '$.q'), o.id % p.stock_shards
           FROM (SELECT id FROM orders WHERE user_id = ?1 AND changes() > 0 ORDER BY id DESC LIMIT 1) o, json_each(?2) l
             JOIN products p ON p.id = json_extract(l.value, '$.p')
           RETURNING order_id AS orderId, product_id AS productId, quantity, unit_price AS unitPrice, amount, stock_shard AS stockShard,
             (SELECT stock_shards FROM products WHERE id = product_id) AS stockShards`,
        )
        .bind(input.userId, lines),
      d1
        .prepare(
          `SELECT c.discount_type AS discountType, c.discount_value AS discountValue
           FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = ?1`,
        )
        .bind(input.userCouponId),
    ];
    const results = await this.writes.batch("orders.place.attempt", stmts);
    const rows = (results[1]?.results ?? []) as (PlacedLine & { orderId: number })[];
    const orderId = rows[0]?.orderId;
    if (orderId === undefined) return { ok: false };
    const coupon = results[2]?.results[0] as { discountType: DiscountType; discountValue: number } | undefined;
    const items = rows
      .map((i) => ({
        productId: i.productId,
        quantity: i.quantity,
        unitPrice: i.unitPrice,
        amount: i.amount,
        stockShard: i.stockShard,
        stockShards: i.stockShards,
      }))
      .sort((a, b) => a.productId - b.productId);
    return { ok: true, orderId, items, coupon: input.userCouponId === null ? undefined : coupon };
  }

  /**
   * Why `recordAttempt` refused, read in one round trip (only on that path):
   * whether the user exists, which products exist, the user coupon, the key.
   */
  async explainRefusedAttempt(userId: number, productIds: number[], userCouponId: number | null, claim?: KeyClaim) {
    const d1 = this.d1;
    const [user, products, coupon, key] = await d1.batch([
      d1.prepare("SELECT 1 AS x FROM users WHERE id = ?").bind(userId),
      d1.prepare("SELECT id FROM products WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(productIds)),
      d1
        .prepare(
          `SELECT uc.id, uc.user_id AS userId, uc.issued_at AS issuedAt, uc.expires_at AS expiresAt, uc.used_at AS usedAt,
                  uc.order_id AS orderId, c.starts_at AS startsAt, c.discount_type AS discountType, c.discount_value AS discountValue
           FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = ?`,
        )
        .bind(userCouponId),
      d1
        .prepare(
          "SELECT 1 AS x FROM idempotency_keys WHERE user_id = ?1 AND key = ?2 AND expires_at > ?3 AND NOT (status_code IS NULL AND created_at <= ?4)",
        )
        .bind(claim?.userId ?? 0, claim?.key ?? "", claim?.now ?? 0, claim?.staleBefore ?? 0),
    ]);
    return {
      userExists: (user?.results.length ?? 0) > 0,
      productIds: new Set((products?.results ?? []).map((r) => (r as { id: number }).id)),
      coupon: coupon?.results[0] as UserCouponRow | undefined,
      keyTaken: claim !== undefined && (key?.results.length ?? 0) > 0,
    };
  }

  /**
   * Whether another attempt under the same Idempotency-Key (`claim`) is still PENDING (within the key's
   * lease; the stale-placement job fails one a crash left): its answer, not this attempt's refusal, is the
   * one the key must keep (issue 19). One read, only on a keyed placement's refusal.
   */
  async twinInFlight(claim: KeyClaim, orderId: number): Promise<boolean> {
    const row = await this.d1
      .prepare(
        "SELECT 1 AS x FROM orders WHERE user_id = ?1 AND status = 'PENDING' AND idempotency_key = ?2 AND created_at > ?3 AND id != ?4 LIMIT 1",
      )
      .bind(claim.userId, claim.key, claim.staleBefore, orderId)
      .first();
    return row !== null;
  }

  /**
   * The commit point of placement, one batch: move the order PENDING -> NOT_PAID with its
   * amounts, use the coupon (owned, unused, unexpired), and store the Idempotency-Key with
   * the answer when the request has one. The batch is shared with the isolate's concurrent
   * placements (src/shared/group-commit.ts), so nothing aborts it: the flip carries every
   * precondition (the order still PENDING, the coupon still usable, the key taken), and the
   * coupon and the key follow only when the flip happened.
   */
  async commitPlacement(
    c: { orderId: number; userId: number; userCouponId: number | null; amounts: Amounts; now: number; expiresAt: number },
    key?: { claim: KeyClaim; status: number; body: string },
  ): Promise<{ ok: true } | { ok: false; reason: "GUARD" | "KEY_TAKEN" }> {
    const { orderId, userId, userCouponId, amounts, now, expiresAt } = c;
    const d1 = this.d1;
    const marker = key ? keyStatements(d1, key.claim, key.status, "?", key.body) : undefined;
    const couponUsable =
      userCouponId === null
        ? ""
        : `AND EXISTS (SELECT 1 FROM user_coupons WHERE id = ?7 AND user_id = ?8 AND used_at IS NULL AND expires_at > ?5 AND issued_at <= ?5)`;
    const stmts: D1PreparedStatement[] = [
      ...(marker ? [marker.take] : []),
      d1
        .prepare(
          `UPDATE orders SET status = 'NOT_PAID', items_amount = ?1, discount_amount = ?2, total_amount = ?3, expires_at = ?4, updated_at = ?5
           WHERE id = ?6 AND status = 'PENDING' ${couponUsable} ${marker ? `AND ${marker.held}` : ""}
           RETURNING id`,
        )
        .bind(
          amounts.itemsAmount,
          amounts.discountAmount,
          amounts.totalAmount,
          expiresAt,
          now,
          orderId,
          ...(userCouponId === null ? [] : [userCouponId, userId]),
        ),
    ];
    if (userCouponId !== null) {
      // changes(): the flip just before, which checked the coupon.
      stmts.push(
        d1
          .prepare(
            "UPDATE user_coupons SET used_at = ?1, order_id = ?2 WHERE id = ?3 AND user_id = ?4 AND used_at IS NULL AND changes() > 0",
          )
          .bind(now, orderId, userCouponId, userId),
      );
    }
    if (marker) stmts.push(marker.close("EXISTS (SELECT 1 FROM orders WHERE id = ? AND status = 'NOT_PAID')", orderId), marker.release);
    const results = await this.writes.batch("orders.place.commit", stmts);
    if (marker && !marker.taken(results[0])) return { ok: false, reason: "KEY_TAKEN" };
    const flipped = (results[marker ? 1 : 0]?.results.length ?? 0) > 0;
    return flipped ? { ok: true } : { ok: false, reason: "GUARD" };
  }

  /**
   * PENDING -> FAILED for a placement that did not commit (or died). Its `closed_at` stays
   * NULL until the DOs released the stock, unless `settled` says no object holds anything
   * for it (every reserve was refused outright): then it is closed in the same write. Conditional,
   * so it shares the isolate's batch of refusals (a sell-out refuses most of a storm).
   */
  async markFailed(orderId: number, now: number, settled = false): Promise<boolean> {
    const [res] = await this.writes.batch("orders.fail", [
      this.d1
        .prepare(
          `UPDATE orders SET status = 'FAILED', updated_at = ?1${settled ? ", closed_at = ?1" : ""} WHERE id = ?2 AND status = 'PENDING' RETURNING id`,
        )
        .bind(now, orderId),
    ]);
    return (res?.results.length ?? 0) > 0;
  }

  /** Whether the order is FAILED now (after a `markFailed` that changed nothing). */
  async isFailed(orderId: number): Promise<boolean> {
    return (await this.findOrder(orderId))?.status === "FAILED";
  }

  async findOrder(orderId: number): Promise<OrderRow | undefined> {
    const row = await this.d1.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ?`).bind(orderId).first<OrderRow>();
    return row ?? undefined;
  }

  /**
   * A page of the user's orders (newest first, ids below `beforeId`) and their lines, in one
   * round trip: a batch of the user check, the page (`limit` rows) and the lines of its first
   * `linesOf` orders (order_items by order_id IN the same page, so the lines cost their own rows).
   * Rows read: the page's orders twice and its lines, whatever the user's history.
   */
  async listUserOrders(q: {
    userId: number;
    filter: OrderListFilter;
    beforeId: number;
    limit: number;
    linesOf: number;
    now: number;
  }): Promise<{ userExists: boolean; orders: OrderRow[]; items: ListedItemRow[] }> {
    const d1 = this.d1;
    // D1 refuses a binding the SQL does not use: `now` (?4) only goes to the arms that compare deadlines.
    const withNow = LIST_ARMS[q.filter].some((arm) => arm.includes("?4"));
    const params = (limit: number) => (withNow ? [q.userId, q.beforeId, limit, q.now] : [q.userId, q.beforeId, limit]);
    const [user, page, lines] = await d1.batch([
      d1.prepare("SELECT 1 AS x FROM users WHERE id = ?").bind(q.userId),
      d1.prepare(listPageSql(q.filter, ORDER_COLUMNS)).bind(...params(q.limit)),
      d1
        .prepare(
          `SELECT oi.order_id AS orderId, oi.product_id AS productId, p.name AS productName, oi.quantity, oi.unit_price AS unitPrice
           FROM order_items oi JOIN products p ON p.id = oi.product_id
           WHERE oi.order_id IN (${listPageSql(q.filter, "id")})
           ORDER BY oi.order_id DESC, oi.product_id`,
        )
        .bind(...params(q.linesOf)),
    ]);
    return {
      userExists: (user?.results.length ?? 0) > 0,
      orders: (page?.results ?? []) as OrderRow[],
      items: (lines?.results ?? []) as ListedItemRow[],
    };
  }

  /** The order's lines, with the stock shard each is reserved on. */
  async findItems(orderId: number): Promise<(OrderItemRow & StockLine)[]> {
    const rows = await this.d1
      .prepare(
        `SELECT product_id AS productId, quantity, unit_price AS unitPrice, amount, stock_shard AS stockShard
         FROM order_items WHERE order_id = ? ORDER BY product_id`,
      )
      .bind(orderId)
      .all<OrderItemRow & StockLine>();
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

  /**
   * Records that the DOs were told (sold or released). Conditional, so it may share a
   * batch: after a payment storm one `closed_at` write per payment otherwise queues behind
   * the payments themselves on the one D1 primary.
   */
  async markSettled(orderId: number, now: number): Promise<void> {
    await this.writes.batch("orders.settle", [
      this.d1.prepare("UPDATE orders SET closed_at = ?1 WHERE id = ?2 AND closed_at IS NULL").bind(now, orderId),
    ]);
  }

  /**
   * Deletes up to `limit` FAILED placement attempts (and their items) last touched before
   * `before` whose DO side is settled (`closed_at` set). They never were orders a user saw;
   * keeping them forever only grows the table. One batch: items first (foreign key), then orders.
   * Both pick the same oldest attempts through the partial index `orders_failed_idx`, whose
   * range `updated_at < before` holds only attempts past their retention (named with INDEXED BY:
   * without table statistics SQLite prefers the status index and reads every FAILED attempt).
   */
  async purgeFailed(before: number, limit: number): Promise<{ orders: number; items: number }> {
    const pick = `SELECT id FROM orders INDEXED BY orders_failed_idx
                  WHERE status = 'FAILED' AND updated_at < ?1 AND closed_at IS NOT NULL ORDER BY updated_at, id LIMIT ?2`;
    const [items, deleted] = await this.d1.batch([
      this.d1.prepare(`DELETE FROM order_items WHERE order_id IN (${pick})`).bind(before, limit),
      this.d1.prepare(`DELETE FROM orders WHERE id IN (${pick})`).bind(before, limit),
    ]);
    return { orders: deleted?.meta.changes ?? 0, items: items?.meta.changes ?? 0 };
  }
}
