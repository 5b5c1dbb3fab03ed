import { STATUS_MESSAGES } from "../shared/errors";
import { keyStatements, type KeyClaim } from "../shared/idempotency";
import { aloneOn, type WriteBatcher } from "../shared/write-batches";

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
 * The payment as one D1 batch (one transaction, one round trip): order PAID, outbox,
 * deduct, history, items' paid_at, and the Idempotency-Key with its answer. Everything is
 * read inside the batch (the amount from the order row), so nothing is read before it.
 *
 * The batch is shared with the isolate's concurrent payments (src/shared/group-commit.ts),
 * so nothing here may abort it: the first write (the order's flip to PAID) carries every
 * precondition in its WHERE (this user's NOT_PAID, unexpired order, a balance that covers
 * it), and every later write is conditioned on the `order.completed` outbox row this
 * request inserted under its own event id, which exists only if the flip happened. The
 * last statement says why a refused payment was refused. The flip's `status = 'NOT_PAID'`
 * condition is what makes exactly one of payment, expiry and cancel win.
 */
export class PaymentRepo {
  constructor(
    private readonly d1: D1Database,
    /** Where the batch goes: shared with concurrent payments per request (services), alone by default. */
    private readonly writes: WriteBatcher = aloneOn(d1),
  ) {}

  async pay(cmd: PaymentCommand): Promise<PaymentBatchResult> {
    const { orderId, userId, now, eventId } = cmd;
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
    // This request's payment happened: its outbox row exists (event ids are unique per request).
    const paid = (param: string) => `EXISTS (SELECT 1 FROM outbox WHERE event_id = ${param})`;
    const statements = [
      ...(key ? [key.take] : []),
      d1
        .prepare(
          `UPDATE orders SET status = 'PAID', paid_at = ?1, updated_at = ?1
           WHERE id = ?2 AND user_id = ?3 AND status = 'NOT_PAID' AND expires_at > ?1
             AND total_amount <= (SELECT balance FROM user_balances WHERE user_id = ?3) ${key ? `AND ${key.held}` : ""}
           RETURNING total_amount AS paidAmount`,
        )
        .bind(now, orderId, userId),
      // changes(): the flip just before.
      d1
        .prepare(
          `INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
           SELECT ?1, 'order.completed', CAST(o.id AS TEXT), ${ORDER_COMPLETED_PAYLOAD}, 'PENDING', 0, ?3, ?3 FROM orders o WHERE o.id = ?4 AND changes() > 0`,
        )
        .bind(eventId, cmd.paidAtIso, now, orderId),
      d1
        .prepare(
          `UPDATE user_balances SET balance = balance - (SELECT total_amount FROM orders WHERE id = ?1), updated_at = ?2 WHERE user_id = ?3 AND ${paid("?4")} RETURNING balance`,
        )
        .bind(orderId, now, userId, eventId),
      // point_history.amount must be > 0: a fully discounted order leaves no USE row.
      d1
        .prepare(
          `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
           SELECT b.user_id, 'USE', o.total_amount, b.balance, o.id, ?3 FROM user_balances b JOIN orders o ON o.id = ?1
           WHERE b.user_id = ?2 AND o.total_amount > 0 AND ${paid("?4")}`,
        )
        .bind(orderId, userId, now, eventId),
      d1
        .prepare(
          `UPDATE order_items SET paid_at = ?1 WHERE order_id = ?2 AND ${paid("?3")} RETURNING product_id AS productId, quantity, stock_shard AS stockShard`,
        )
        .bind(now, orderId, eventId),
      // Read only for a refusal: whether the order was payable (then the balance was short).
      d1
        .prepare(
          `SELECT CASE WHEN ${paid("?1")} THEN 'PAID'
                       WHEN EXISTS (SELECT 1 FROM orders WHERE id = ?2 AND user_id = ?3 AND status = 'NOT_PAID' AND expires_at > ?4) THEN 'BALANCE'
                       ELSE 'ORDER' END AS outcome`,
        )
        .bind(eventId, orderId, userId, now),
      ...(key ? [key.close(paid("?"), eventId), key.release] : []),
    ];
    const results = await this.writes.batch("orders.pay", statements);
    const at = key ? 1 : 0;
    if (key && !key.taken(results[0])) return { ok: false, reason: "KEY_TAKEN" };
    const paidAmount = (results[at]?.results[0] as { paidAmount: number } | undefined)?.paidAmount;
    const balance = (results[at + 2]?.results[0] as { balance: number } | undefined)?.balance;
    if (paidAmount !== undefined && balance !== undefined) {
      const items = ((results[at + 4]?.results ?? []) as PaidLine[]).sort((a, b) => a.productId - b.productId);
      return { ok: true, balance, paidAmount, items };
    }
    const outcome = (results[at + 5]?.results[0] as { outcome: string } | undefined)?.outcome;
    if (outcome === "PAID") throw new Error("pay: paid without a balance or amount returned");
    return { ok: false, reason: outcome === "BALANCE" ? "INSUFFICIENT_BALANCE" : "GUARD" };
  }
}
