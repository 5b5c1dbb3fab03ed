import { AppError } from "../shared/errors";
import { toIso } from "../shared/clock";
import type { PointHistoryRow, PointsRepo } from "./points.repo";
import { assertChargeAmount } from "./points.rules";
import { KeyTakenError, type KeyClaim } from "../shared/idempotency";

export interface HistoryPage {
  userId: number;
  items: { type: PointHistoryRow["type"]; amount: number; balanceAfter: number; orderId: number | null; createdAt: string }[];
  nextCursor: string | null;
}

/** Opaque cursor: base64url of the last history id seen. */
export function encodeCursor(id: number): string {
  return btoa(`h:${id}`).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

export function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  try {
    const text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
    const match = /^h:([1-9][0-9]{0,15})$/.exec(text);
    const id = match ? Number(match[1]) : NaN;
    if (Number.isSafeInteger(id)) return id;
  } catch {
    // fall through
  }
  throw new AppError("VALIDATION_FAILED", "cursor: not a cursor returned by this API");
}

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
