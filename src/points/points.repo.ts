import { and, asc, eq, gt } from "drizzle-orm";
import { constraintFailed, type Db } from "../db/client";
import { pointHistory, userBalances, users } from "../db/schema";
import { STATUS_MESSAGES } from "../shared/errors";
import { isKeyTaken, keyStatements, type KeyClaim } from "../shared/idempotency";

export interface PointHistoryRow {
  id: number;
  type: "CHARGE" | "USE" | "REFUND";
  amount: number;
  balanceAfter: number;
  orderId: number | null;
  createdAt: number;
}

export type ChargeResult = { ok: true; balance: number } | { ok: false; reason: "USER_NOT_FOUND" | "BALANCE_LIMIT_EXCEEDED" | "KEY_TAKEN" };

/** D1 access for balances and point history. */
export class PointsRepo {
  constructor(
    private readonly db: Db,
    private readonly d1: D1Database,
  ) {}

  async findBalance(userId: number): Promise<number | undefined> {
    const row = await this.db
      .select({ balance: userBalances.balance })
      .from(userBalances)
      .where(eq(userBalances.userId, userId))
      .get();
    return row?.balance;
  }

  async userExists(userId: number): Promise<boolean> {
    const row = await this.db.select({ id: users.id }).from(users).where(eq(users.id, userId)).get();
    return row !== undefined;
  }

  /**
   * Adds `amount` and writes the CHARGE history row in one D1 batch (one
   * transaction), with the Idempotency-Key and its answer when there is one.
   * The increment is done by SQLite (`balance = balance + ?`), so concurrent
   * charges never lose an update; the CHECK on the balance aborts the whole
   * batch when the cap would be crossed, a guard row when the user is unknown.
   */
  async charge(userId: number, amount: number, at: number, claim?: KeyClaim): Promise<ChargeResult> {
    const key = claim
      ? keyStatements(
          this.d1,
          claim,
          200,
          "SELECT json_object('code', 200, 'message', ?, 'data', json_object('userId', user_id, 'balance', balance)) FROM user_balances WHERE user_id = ?",
          STATUS_MESSAGES[200],
          userId,
        )
      : undefined;
    const offset = key?.open.length ?? 0;
    try {
      const results = await this.d1.batch<{ balance: number }>([
        ...(key?.open ?? []),
        this.d1
          .prepare("UPDATE user_balances SET balance = balance + ?1, updated_at = ?2 WHERE user_id = ?3 RETURNING balance")
          .bind(amount, at, userId),
        this.d1.prepare("INSERT INTO batch_guards (ok, reason) SELECT 0, 'user' WHERE changes() = 0"),
        this.d1
          .prepare(
            `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
             SELECT user_id, 'CHARGE', ?1, balance, NULL, ?2 FROM user_balances WHERE user_id = ?3`,
          )
          .bind(amount, at, userId),
        ...(key?.close ?? []),
      ]);
      const balance = results[offset]?.results[0]?.balance;
      if (balance === undefined) throw new Error("charge: no balance returned");
      return { ok: true, balance };
    } catch (err) {
      if (constraintFailed(err, "batch_guards_ok")) return { ok: false, reason: "USER_NOT_FOUND" };
      if (constraintFailed(err, "user_balances_balance_range") || constraintFailed(err, "point_history_balance_after_range")) {
        return { ok: false, reason: "BALANCE_LIMIT_EXCEEDED" };
      }
      if (isKeyTaken(err)) return { ok: false, reason: "KEY_TAKEN" };
      throw err;
    }
  }

  /** History in id order, `limit` rows after `afterId` (keyset pagination). */
  async listHistory(userId: number, afterId: number, limit: number): Promise<PointHistoryRow[]> {
    return this.db
      .select({
        id: pointHistory.id,
        type: pointHistory.type,
        amount: pointHistory.amount,
        balanceAfter: pointHistory.balanceAfter,
        orderId: pointHistory.orderId,
        createdAt: pointHistory.createdAt,
      })
      .from(pointHistory)
      .where(and(eq(pointHistory.userId, userId), gt(pointHistory.id, afterId)))
      .orderBy(asc(pointHistory.id))
      .limit(limit)
      .all();
  }
}
