import { and, asc, eq, gt } from "drizzle-orm";
import type { Db } from "../db/client";
import { pointHistory, userBalances, users } from "../db/schema";
import { AppError, STATUS_MESSAGES } from "../shared/errors";
import { errorBody } from "../shared/envelope";
import { keyStatements, type KeyClaim } from "../shared/idempotency";
import { aloneOn, type WriteBatcher } from "../shared/write-batches";
import { MAX_BALANCE } from "./points.rules";

export interface PointHistoryRow {
  id: number;
  type: "CHARGE" | "USE" | "REFUND";
  amount: number;
  balanceAfter: number;
  orderId: number | null;
  createdAt: number;
}

/** `keyStored`: the refusal's answer is stored under the request's Idempotency-Key already (in the charge's batch). */
export type ChargeResult =
  | { ok: true; balance: number }
  | { ok: false; reason: "USER_NOT_FOUND" | "BALANCE_LIMIT_EXCEEDED"; keyStored: boolean }
  | { ok: false; reason: "KEY_TAKEN" };

/** The answers a keyed charge's refusal is stored with, in its batch: what the error handler would send. */
const REFUSALS = (["BALANCE_LIMIT_EXCEEDED", "USER_NOT_FOUND"] as const).map((code) => {
  const err = new AppError(code);
  return { status: err.status, body: JSON.stringify(errorBody(err)) };
});

/** D1 access for balances and point history. */
export class PointsRepo {
  constructor(
    private readonly db: Db,
    private readonly d1: D1Database,
    /** Where the charge batch goes: shared with concurrent charges per request (services), alone by default. */
    private readonly writes: WriteBatcher = aloneOn(d1),
  ) {}

  async findBalance(userId: number): Promise<number | undefined> {
    const row = await this.db.select({ balance: userBalances.balance }).from(userBalances).where(eq(userBalances.userId, userId)).get();
    return row?.balance;
  }

  async userExists(userId: number): Promise<boolean> {
    const row = await this.db.select({ id: users.id }).from(users).where(eq(users.id, userId)).get();
    return row !== undefined;
  }

  /**
   * Adds `amount` and writes the CHARGE history row in one D1 batch (one transaction),
   * with the Idempotency-Key and its answer when there is one. The batch is shared with
   * the isolate's concurrent charges (src/shared/group-commit.ts), so nothing here may
   * abort it: the cap is a condition of the UPDATE (`balance + amount <= 5,000,000`), the
   * history row is written only when the UPDATE was (`changes()`), and a last statement
   * says, only for a refusal, whether the user exists. The increment is done by SQLite
   * (`balance = balance + ?`), so concurrent charges never lose an update; the CHECK on the
   * balance stays as a backstop.
   */
  async charge(userId: number, amount: number, at: number, claim?: KeyClaim): Promise<ChargeResult> {
    const d1 = this.d1;
    const key = claim
      ? keyStatements(
          d1,
          claim,
          200,
          "SELECT json_object('code', 200, 'message', ?, 'data', json_object('userId', user_id, 'balance', balance)) FROM user_balances WHERE user_id = ?",
          STATUS_MESSAGES[200],
          userId,
        )
      : undefined;
    const statements = [
      ...(key ? [key.take] : []),
      d1
        .prepare(
          `UPDATE user_balances SET balance = balance + ?1, updated_at = ?2
           WHERE user_id = ?3 AND balance + ?1 <= ?4 ${key ? `AND ${key.held}` : ""} RETURNING balance`,
        )
        .bind(amount, at, userId, MAX_BALANCE),
      // changes(): the UPDATE just before (a SELECT in between would not reset it, an INSERT would).
      d1
        .prepare(
          `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
           SELECT user_id, 'CHARGE', ?1, balance, NULL, ?2 FROM user_balances WHERE user_id = ?3 AND changes() > 0`,
        )
        .bind(amount, at, userId),
      // Read only for a refusal: is the user there (then the cap refused it)?
      d1
        .prepare("SELECT CASE WHEN changes() > 0 THEN 1 ELSE EXISTS (SELECT 1 FROM user_balances WHERE user_id = ?1) END AS known")
        .bind(userId),
      // A refusal is stored with its answer in this batch (the cap's 409 for a known user, else 404), not after it.
      ...(key
        ? [
            key.close("changes() > 0"),
            key.refuse(
              "CASE WHEN EXISTS (SELECT 1 FROM user_balances WHERE user_id = ?) THEN ? ELSE ? END",
              "CASE WHEN EXISTS (SELECT 1 FROM user_balances WHERE user_id = ?) THEN ? ELSE ? END",
              userId,
              REFUSALS[0]!.status,
              REFUSALS[1]!.status,
              userId,
              REFUSALS[0]!.body,
              REFUSALS[1]!.body,
            ),
          ]
        : []),
    ];
    const results = await this.writes.batch("points.charge", statements);
    const at0 = key ? 1 : 0;
    if (key && !key.taken(results[0])) return { ok: false, reason: "KEY_TAKEN" };
    const balance = (results[at0]?.results[0] as { balance: number } | undefined)?.balance;
    if (balance !== undefined) return { ok: true, balance };
    const known = (results[at0 + 2]?.results[0] as { known: number } | undefined)?.known;
    return { ok: false, reason: known ? "BALANCE_LIMIT_EXCEEDED" : "USER_NOT_FOUND", keyStored: key !== undefined };
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
