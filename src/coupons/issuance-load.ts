import { errorFields, log } from "../shared/logger";
import { homeShard } from "../sharding/routing";
import { LOAD_PAGE_ROWS, type IssuanceStore, type IssuerPage } from "./issuance.repo";

/** The coupon row a finished load hands to its object. */
export interface LoadedCoupon {
  couponId: number;
  quantity: number;
  /** Issuances of this shard's users D1 held (now rows of `issuances`, synced). */
  issued: number;
  /** Units this shard starts with. */
  held: number;
  shard: number;
  shards: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
}

/** What the loader needs from its CouponIssuer shard. */
export interface LoadHost {
  readonly sql: SqlStorage;
  /** The D1 adapter (read on each use: tests swap the object's field). */
  store(): IssuanceStore;
  /** Whether the object's tables exist (they are created when D1 first confirms the coupon). */
  schemaReady(): boolean;
  createSchema(): void;
  transactionSync<T>(body: () => T): T;
  /** Writes the coupon row, inside the transaction of the last step: from then on the object serves. */
  finish(coupon: LoadedCoupon): void;
}

export const LOAD_PROGRESS_SCHEMA = `CREATE TABLE IF NOT EXISTS load_progress (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  after_id INTEGER NOT NULL,
  seen INTEGER NOT NULL,
  mine INTEGER NOT NULL,
  shards INTEGER NOT NULL
)`;

/** The persisted cursor: the last `user_coupons.id` applied, the coupon's rows so far, this shard's, and the K they were homed by. */
interface Progress extends Record<string, SqlStorageValue> {
  after_id: number;
  seen: number;
  mine: number;
  shards: number;
}

/**
 * The first load of one CouponIssuer shard from D1: the coupon's definition and
 * the issuances D1 already holds for this shard's users (an import, a coupon of an
 * older version, an object whose storage was lost). Owns `load_progress`.
 *
 * Bounded steps: each step is one D1 call for at most LOAD_PAGE_ROWS rows (keyset
 * by `user_coupons.id`) and one SQLite transaction that inserts this shard's rows
 * and advances the persisted cursor and counts together. What the load holds in
 * memory is one page: the counts live in `load_progress`, and the per-user lookup
 * the object decides by is the `issuances` primary key in SQLite, not a Set. An
 * eviction or a failed D1 call between steps loses nothing: the next load resumes
 * at the cursor, and no step is applied twice (the cursor moves with its rows).
 *
 * The coupon row is written only by the last step, so until then the object has no
 * coupon and decides nothing: a request that arrives during the load waits for it
 * (the object runs the load outside `blockConcurrencyWhile`, whose 30 s a
 * 1,000,000-row coupon could exceed; its requests wait on the one load promise).
 */
export class IssuanceLoader {
  constructor(
    private readonly host: LoadHost,
    private readonly pageRows = LOAD_PAGE_ROWS,
  ) {}

  /** Runs the load to its end (or the first D1 failure). Never throws. `d1Calls`: the steps it awaited. */
  async load(couponId: number, shard: number): Promise<{ result: "done" | "failed"; d1Calls: number }> {
    let d1Calls = 0;
    try {
      for (;;) {
        const progress = this.progress();
        d1Calls++;
        const page = await this.host
          .store()
          .loadPage(couponId, { afterId: progress?.after_id ?? 0, limit: this.pageRows, recount: shard === 0 && !progress });
        // An unknown coupon or shard is not remembered (no storage left behind): it may be created later.
        if (!page) return { result: "done", d1Calls };
        const shards = Math.max(page.coupon.shards, 1);
        if (shard >= shards) return { result: "done", d1Calls };
        if (progress && progress.shards !== shards) {
          // K was raised while this shard was loading (only possible while nothing is issued): homes moved, start over.
          this.host.transactionSync(() => {
            this.host.sql.exec("DELETE FROM issuances");
            this.host.sql.exec("DELETE FROM load_progress");
          });
          continue;
        }
        if (this.apply(couponId, shard, shards, progress, page)) return { result: "done", d1Calls };
      }
    } catch (err) {
      log("error", "coupon issuer could not load from D1", { couponId, shard, steps: d1Calls, ...errorFields(err) });
      return { result: "failed", d1Calls };
    }
  }

  /** One step, in one transaction; true when it was the last (the coupon row is written). */
  private apply(couponId: number, shard: number, shards: number, progress: Progress | undefined, page: IssuerPage): boolean {
    return this.host.transactionSync(() => {
      if (!progress) this.host.createSchema();
      let mine = progress?.mine ?? 0;
      for (const r of page.rows) {
        if (homeShard(r.userId, shards) !== shard) continue;
        const added = this.host.sql.exec(
          "INSERT OR IGNORE INTO issuances (user_id, issued_at, expires_at, user_coupon_id, synced) VALUES (?, ?, ?, ?, 1)",
          r.userId,
          r.issuedAt,
          r.expiresAt,
          r.userCouponId,
        ).rowsWritten;
        if (added > 0) mine++;
      }
      const seen = (progress?.seen ?? 0) + page.rows.length;
      const afterId = page.rows.length > 0 ? page.rows[page.rows.length - 1]!.userCouponId : (progress?.after_id ?? 0);
      if (page.rows.length >= this.pageRows) {
        this.host.sql.exec(
          "INSERT OR REPLACE INTO load_progress (id, after_id, seen, mine, shards) VALUES (1, ?, ?, ?, ?)",
          afterId,
          seen,
          mine,
          shards,
        );
        return false;
      }
      if (shard > 0 && mine > 0) {
        log("error", "coupon shard found issuances it never made; counting them as held", { couponId, shard, rows: mine });
      }
      const quantity = Math.max(page.coupon.quantity, seen);
      this.host.finish({
        couponId,
        quantity,
        issued: mine,
        // Shard 0 starts with the whole quantity less the other shards' rows; the others with their own (they take a share when primed).
        held: shard === 0 ? quantity - (seen - mine) : mine,
        shard,
        shards,
        startsAt: page.coupon.startsAt,
        endsAt: page.coupon.endsAt,
        validDays: page.coupon.validDays,
      });
      this.host.sql.exec("DELETE FROM load_progress");
      return true;
    });
  }

  private progress(): Progress | undefined {
    if (!this.host.schemaReady()) return undefined;
    return this.host.sql.exec<Progress>("SELECT after_id, seen, mine, shards FROM load_progress WHERE id = 1").toArray()[0];
  }
}
