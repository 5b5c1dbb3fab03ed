import { AppError } from "../shared/errors";
import { toIso } from "../shared/clock";
import type { PointHistoryRow, PointsRepo } from "./points.repo";
import { assertChargeAmount } from "./points.rules";
import { KeyTakenError, type KeyClaim } from "../shared/idempotency";
import { decodeCursor, encodeCursor } from "../shared/cursor";

export interface HistoryPage {
  userId: number;
  items: { type: PointHistoryRow["type"]; amount: number; balanceAfter: number; orderId: number | null; createdAt: string }[];
  nextCursor: string | null;
}

/** History cursors (tag `h`): src/shared/cursor.ts. */
export { decodeCursor, encodeCursor };

/** Point use cases: charge, balance, history. */
export class PointsService {
  constructor(
    private readonly repo: PointsRepo,
    private readonly clock: () => number,
  ) {}

  /** One round trip: the charge, its history row and the Idempotency-Key (with the answer) in one batch. */
  async charge(userId: number, amount: number, claim?: KeyClaim): Promise<{ userId: number; balance: number }> {
    assertChargeAmount(amount);
    const result = await this.repo.charge(userId, amount, this.clock(), claim);
    if (!result.ok) {
      if (result.reason === "KEY_TAKEN") throw new KeyTakenError();
      // The batch stored the refusal under the key: the middleware has nothing left to store.
      if (claim && result.keyStored) claim.stored = true;
      throw new AppError(result.reason);
    }
    if (claim) claim.stored = true;
    return { userId, balance: result.balance };
  }

  async balance(userId: number): Promise<{ userId: number; balance: number }> {
    const balance = await this.repo.findBalance(userId);
    if (balance === undefined) throw new AppError("USER_NOT_FOUND");
    return { userId, balance };
  }

  async history(userId: number, limit: number, cursor: string | undefined): Promise<HistoryPage> {
    const afterId = decodeCursor(cursor);
    if (!(await this.repo.userExists(userId))) throw new AppError("USER_NOT_FOUND");
    const rows = await this.repo.listHistory(userId, afterId, limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      userId,
      items: page.map((r) => ({
        type: r.type,
        amount: r.amount,
        balanceAfter: r.balanceAfter,
        orderId: r.orderId,
        createdAt: toIso(r.createdAt),
      })),
      nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null,
    };
  }
}
