import { constraintFailed } from "../db/client";
import { insertOutboxStatement, type OutboxEvent } from "../events/event.schemas";

export interface PaymentCommand {
  orderId: number;
  userId: number;
  totalAmount: number;
  now: number;
  /** The `order.completed` event, appended to the outbox in the same batch. */
  event: OutboxEvent;
}

export type PaymentBatchResult =
  | { ok: true; balance: number }
  | { ok: false; reason: "GUARD" | "INSUFFICIENT_BALANCE" };

/**
 * The payment as one D1 batch (one transaction): guard, deduct, history,
 * order PAID, items' paid_at, outbox. Preconditions abort the whole batch
 * through CHECK constraints (batch_guards, user_balances' balance range).
 */
export class PaymentRepo {
  constructor(private readonly d1: D1Database) {}

  async pay(cmd: PaymentCommand): Promise<PaymentBatchResult> {
    const { orderId, userId, totalAmount, now } = cmd;
    const d1 = this.d1;
    try {
      const results = await d1.batch<{ balance: number }>([
        // Only this user's NOT_PAID, unexpired order with the amount we priced may be paid.
        d1
          .prepare(
            `INSERT INTO batch_guards (ok, reason) SELECT 0, 'order' WHERE NOT EXISTS (
               SELECT 1 FROM orders WHERE id = ?1 AND user_id = ?2 AND status = 'NOT_PAID' AND expires_at > ?3 AND total_amount = ?4)`,
          )
          .bind(orderId, userId, now, totalAmount),
        // A short balance violates CHECK(balance BETWEEN 0 AND 5000000) and aborts the batch.
        d1
          .prepare("UPDATE user_balances SET balance = balance - ?1, updated_at = ?2 WHERE user_id = ?3 RETURNING balance")
          .bind(totalAmount, now, userId),
        d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'balance' WHERE changes() = 0"),
        // point_history.amount must be > 0: a fully discounted order leaves no USE row.
        d1
          .prepare(
            `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
             SELECT user_id, 'USE', ?1, balance, ?2, ?3 FROM user_balances WHERE user_id = ?4 AND ?1 > 0`,
          )
          .bind(totalAmount, orderId, now, userId),
        d1
          .prepare("UPDATE orders SET status = 'PAID', paid_at = ?1, updated_at = ?1 WHERE id = ?2 AND status = 'NOT_PAID'")
          .bind(now, orderId),
        d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'order' WHERE changes() = 0"),
        d1.prepare("UPDATE order_items SET paid_at = ?1 WHERE order_id = ?2").bind(now, orderId),
        insertOutboxStatement(d1, cmd.event, now),
      ]);
      const balance = results[1]?.results[0]?.balance;
      if (balance === undefined) throw new Error("pay: no balance returned");
      return { ok: true, balance };
    } catch (err) {
      if (constraintFailed(err, "user_balances_balance_range") || constraintFailed(err, "point_history_balance_after_range")) {
        return { ok: false, reason: "INSUFFICIENT_BALANCE" };
      }
      if (constraintFailed(err, "batch_guards_ok")) return { ok: false, reason: "GUARD" };
      throw err;
    }
  }
}
