import { constraintFailed } from "../db/client";
import { STATUS_MESSAGES } from "../shared/errors";
import { isKeyTaken, keyStatements, type KeyClaim } from "../shared/idempotency";

export interface PaymentCommand {
  orderId: number;
  userId: number;
  now: number;
  /** ISO form of `now` (the event's `occurredAt` and `paidAt`). */
  paidAtIso: string;
  /** Id of the `order.completed` event appended to the outbox in the same batch. */
  eventId: string;
  /** The request's Idempotency-Key, stored with the answer in the same batch. */
  claim?: KeyClaim;
}

/** A paid line: what the ranking counts, and the stock shard that sells it. */
export interface PaidLine {
  productId: number;
  quantity: number;
  stockShard: number;
}

export type PaymentBatchResult =
  | { ok: true; balance: number; paidAmount: number; items: PaidLine[] }
  | { ok: false; reason: "GUARD" | "INSUFFICIENT_BALANCE" | "KEY_TAKEN" };

/**
 * The `order.completed` v1 envelope (src/events/event.schemas.ts `OrderCompletedV1`),
 * built by SQLite from the order row and its lines inside the payment batch, so the
 * payment needs no read before it. `json(...)` keeps the nested array JSON, not text.
 */
const ORDER_COMPLETED_PAYLOAD = `json_object('eventId', ?1, 'type', 'order.completed', 'version', 1, 'occurredAt', ?2,
  'order', json_object('orderId', o.id, 'userId', o.user_id, 'userCouponId', o.user_coupon_id,
    'items', json((SELECT json_group_array(json_object('productId', i.product_id, 'quantity', i.quantity, 'unitPrice', i.unit_price, 'amount', i.amount))
                   FROM (SELECT * FROM order_items WHERE order_id = o.id ORDER BY product_id) i)),
    'itemsAmount', o.items_amount, 'discountAmount', o.discount_amount, 'totalAmount', o.total_amount, 'paidAt', ?2))`;

/**
 * The payment as one D1 batch (one transaction, one round trip): guard,
 * deduct, history, order PAID, items' paid_at, outbox, and the Idempotency-Key
 * with its answer. Everything is read inside the batch (the amount from the
 * order row), so nothing is read before it. Preconditions abort the whole
 * batch through CHECK constraints (batch_guards, user_balances' balance range).
 */
export class PaymentRepo {
  constructor(private readonly d1: D1Database) {}

  async pay(cmd: PaymentCommand): Promise<PaymentBatchResult> {
    const { orderId, userId, now } = cmd;
    const d1 = this.d1;
    const key = cmd.claim
      ? keyStatements(
          d1,
          cmd.claim,
          200,
          `SELECT json_object('code', 200, 'message', ?, 'data', json_object('orderId', o.id, 'status', 'PAID', 'paidAmount', o.total_amount,
             'balance', (SELECT balance FROM user_balances WHERE user_id = o.user_id))) FROM orders o WHERE o.id = ?`,
          STATUS_MESSAGES[200],
          orderId,
        )
      : undefined;
    const total = "(SELECT total_amount FROM orders WHERE id = ?1)";
    const statements = [
      ...(key?.open ?? []),
      // Only this user's NOT_PAID, unexpired order may be paid.
      d1
        .prepare(
          `INSERT INTO batch_guards (ok, reason) SELECT 0, 'order' WHERE NOT EXISTS (
             SELECT 1 FROM orders WHERE id = ?1 AND user_id = ?2 AND status = 'NOT_PAID' AND expires_at > ?3)`,
        )
        .bind(orderId, userId, now),
      // A short balance violates CHECK(balance BETWEEN 0 AND 5000000) and aborts the batch.
      d1.prepare(`UPDATE user_balances SET balance = balance - ${total}, updated_at = ?3 WHERE user_id = ?2 RETURNING balance`).bind(orderId, userId, now),
      d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'balance' WHERE changes() = 0"),
      // point_history.amount must be > 0: a fully discounted order leaves no USE row.
      d1
        .prepare(
          `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
           SELECT b.user_id, 'USE', o.total_amount, b.balance, o.id, ?3 FROM user_balances b JOIN orders o ON o.id = ?1
           WHERE b.user_id = ?2 AND o.total_amount > 0`,
        )
        .bind(orderId, userId, now),
      d1
        .prepare("UPDATE orders SET status = 'PAID', paid_at = ?1, updated_at = ?1 WHERE id = ?2 AND status = 'NOT_PAID' RETURNING total_amount AS paidAmount")
        .bind(now, orderId),
      d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'order' WHERE changes() = 0"),
      d1.prepare("UPDATE order_items SET paid_at = ?1 WHERE order_id = ?2 RETURNING product_id AS productId, quantity, stock_shard AS stockShard").bind(now, orderId),
      d1
        .prepare(
          `INSERT OR IGNORE INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
           SELECT ?1, 'order.completed', CAST(o.id AS TEXT), ${ORDER_COMPLETED_PAYLOAD}, 'PENDING', 0, ?3, ?3 FROM orders o WHERE o.id = ?4`,
        )
        .bind(cmd.eventId, cmd.paidAtIso, now, orderId),
      ...(key?.close ?? []),
    ];
    const offset = key?.open.length ?? 0;
    try {
      const results = await d1.batch(statements);
      const balance = (results[offset + 1]?.results[0] as { balance: number } | undefined)?.balance;
      const paidAmount = (results[offset + 4]?.results[0] as { paidAmount: number } | undefined)?.paidAmount;
      const items = ((results[offset + 6]?.results ?? []) as PaidLine[]).sort((a, b) => a.productId - b.productId);
      if (balance === undefined || paidAmount === undefined) throw new Error("pay: no balance or amount returned");
      return { ok: true, balance, paidAmount, items };
    } catch (err) {
      if (constraintFailed(err, "batch_guards_ok")) return { ok: false, reason: "GUARD" };
      if (constraintFailed(err, "user_balances_balance_range") || constraintFailed(err, "point_history_balance_after_range")) {
        return { ok: false, reason: "INSUFFICIENT_BALANCE" };
      }
      if (isKeyTaken(err)) return { ok: false, reason: "KEY_TAKEN" };
      throw err;
    }
  }
}
