import { errorFields, log } from "../shared/logger";
import { ROWS_PER_BATCH, type IssuanceRecord, type IssuanceStore } from "./issuance.repo";

/** Most rows in one D1 batch of a CouponIssuer shard (wins and re-synced rows together). */
export const GROUP_ROWS = ROWS_PER_BATCH;
/**
 * A batch that is not full starts no sooner than this after the shard's previous batch
 * started (a full one goes at once): at most 4 partial batches a second per shard, so a
 * storm costs D1 at most 4 write transactions a second per shard plus one per 100 wins.
 * The price: a win that arrives while its shard is busy waits up to this long for its batch.
 */
export const BATCH_INTERVAL_MS = 250;

/** What the projection needs from its CouponIssuer shard. */
export interface ProjectionHost {
  readonly sql: SqlStorage;
  /** The D1 adapter (read on each use: tests swap the object's field to simulate an outage). */
  store(): IssuanceStore;
  couponId(): number;
  /** One synchronous storage transaction (the object's rollback-aware wrapper). */
  tx<T>(body: () => T): T;
  /** Provisional issuances D1 refused (unknown users) were deleted and their units freed. */
  rolledBack(userIds: number[]): void;
  /** A batch committed and its rows are marked synced: `ids` are the users D1 holds, with their row ids. */
  committed(ids: Map<number, number>): Promise<void>;
  /** A batch failed: the alarm must come back for what is still unsynced. */
  failed(): Promise<void>;
  /**
   * How long a partial batch gathers after the previous one started: BATCH_INTERVAL_MS for
   * a sharded coupon (K objects multiply the batches), 0 for an unsharded one, whose one
   * object already holds D1 to one batch in flight and where a window would only delay wins.
   */
  paceMs(): number;
}

/** `done`: nothing unsynced was left to send; `capped`: rows remain for the next alarm; `failed`: D1 refused a chunk. */
export type ResyncOutcome = "done" | "capped" | "failed";

interface Queued {
  records: IssuanceRecord[];
  resolve: (ids: Map<number, number> | undefined) => void;
}

/**
 * The path from one CouponIssuer shard's `issuances` table to D1. Owns the
 * write queue of the object: every D1 batch of issuances goes through it, so at
 * most ONE batch is in flight per object, whatever drives it (wins, the alarm's
 * re-sync). Owns the `synced` flag: a batch's rows are marked synced (or, for
 * users D1 does not know, rolled back) in the object's SQLite as soon as that
 * batch commits, never later with others, so a failure loses no confirmed work.
 *
 * Why this bounds D1's write transactions per coupon (issue 17): a shard writes
 * one batch at a time and every win that arrives meanwhile joins the next batch
 * (group commit, up to GROUP_ROWS rows). One batch in flight alone would still let
 * a busy shard write once per D1 round trip (tens a second, each carrying a few
 * wins, and K times that per coupon: K = 8 made 6.4 times the batches of K = 1 in
 * docs/PERFORMANCE.md); so a batch that is not full also waits until
 * BATCH_INTERVAL_MS after the previous one started. A storm then costs each shard
 * at most 4 partial batches a second plus one per GROUP_ROWS wins, and a coupon at
 * most 4 K + wins / 100 a second (K > 1; an unsharded coupon does not wait, see paceMs), while every win still reaches D1 within one
 * interval and the batches ahead of it. The alarm's re-sync uses the same queue
 * and sends at most a few chunks per alarm (the object's SYNC_CHUNKS_PER_ALARM).
 */
export class IssuanceProjection {
  /** D1 batches this incarnation sent (a load indicator for the admin view). */
  batches = 0;
  private readonly queue: Queued[] = [];
  /** Rows in `queue`. */
  private queuedRows = 0;
  private draining = false;
  /** When the last batch started (the pacing window counts from it). */
  private lastStart = Number.NEGATIVE_INFINITY;
  /** Ends the current gathering wait early (the queue filled a batch). */
  private wake: (() => void) | undefined;
  private readonly intervalMs: number | undefined;
  private readonly clock: () => number;
  private readonly wait: (ms: number) => Promise<void>;

  /** `intervalMs` (else the host's pace), `clock` and `wait` (else Date.now and a timer) are test seams. */
  constructor(
    private readonly host: ProjectionHost,
    opts: { intervalMs?: number; clock?: () => number; wait?: (ms: number) => Promise<void> } = {},
  ) {
    this.intervalMs = opts.intervalMs;
    this.clock = opts.clock ?? Date.now;
    this.wait = opts.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Writes `records` (at most GROUP_ROWS) in the next batch, with whatever else
   * is waiting. Resolves to userId -> user coupon id of the batch's rows D1 holds,
   * or undefined when D1 failed (the rows stay unsynced; the alarm is armed).
   * A win waits for exactly one batch carrying its row: one round trip, after
   * the batch in flight and at most BATCH_INTERVAL_MS of gathering (queueing, like
   * waiting for the input gate); a win on an idle shard goes at once.
   */
  project(records: IssuanceRecord[]): Promise<Map<number, number> | undefined> {
    return new Promise((resolve) => {
      this.queue.push({ records, resolve });
      this.queuedRows += records.length;
      if (!this.draining) void this.drain();
      else if (this.queuedRows >= GROUP_ROWS) this.wake?.();
    });
  }

  /**
   * The alarm's re-sync of what is still unsynced (a failed batch, a crash before
   * the D1 write), in chunks of GROUP_ROWS read by user id, each a batch of its
   * own marked synced when it commits. Stops at the first failure, and after
   * `maxChunks` chunks (the rest waits for the next alarm), so a backlog after a
   * long outage is finished a bounded step at a time and every step keeps what it
   * did. Rows `skip` names are left to the request writing them right now.
   */
  async resync(opts: { maxChunks: number; skip: (userId: number) => boolean }): Promise<ResyncOutcome> {
    let after = 0;
    for (let chunk = 0; chunk < opts.maxChunks; chunk++) {
      const rows = this.host.sql
        .exec<{ user_id: number; issued_at: number; expires_at: number }>(
          "SELECT user_id, issued_at, expires_at FROM issuances WHERE synced = 0 AND user_id > ? ORDER BY user_id LIMIT ?",
          after,
          GROUP_ROWS,
        )
        .toArray();
      if (rows.length === 0) return "done";
      after = rows[rows.length - 1]!.user_id;
      const records = rows
        .filter((r) => !opts.skip(r.user_id))
        .map((r) => ({ userId: r.user_id, issuedAt: r.issued_at, expiresAt: r.expires_at }));
      if (records.length > 0 && (await this.project(records)) === undefined) return "failed";
    }
    const left = this.host.sql.exec("SELECT 1 FROM issuances WHERE synced = 0 AND user_id > ? LIMIT 1", after).toArray().length > 0;
    return left ? "capped" : "done";
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        await this.gather();
        const group = this.takeGroup();
        this.lastStart = this.clock();
        const ids = await this.write(group.flatMap((g) => g.records));
        for (const g of group) g.resolve(ids);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Lets a batch that is not full gather wins until BATCH_INTERVAL_MS after the previous one started. */
  private async gather(): Promise<void> {
    const left = this.lastStart + (this.intervalMs ?? this.host.paceMs()) - this.clock();
    if (left <= 0 || this.queuedRows >= GROUP_ROWS) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      void this.wait(left).then(resolve);
    });
    this.wake = undefined;
  }

  /** The next batch: queued entries in arrival order up to GROUP_ROWS rows (at least one entry). */
  private takeGroup(): Queued[] {
    let rows = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || rows + this.queue[n]!.records.length <= GROUP_ROWS)) {
      rows += this.queue[n]!.records.length;
      n++;
    }
    this.queuedRows -= rows;
    return this.queue.splice(0, n);
  }

  /**
   * One batch: projects the records, then marks them synced in one transaction (a
   * record D1 refused for want of a user is rolled back: its unit goes back).
   */
  private async write(records: IssuanceRecord[]): Promise<Map<number, number> | undefined> {
    const couponId = this.host.couponId();
    try {
      this.batches += Math.ceil(records.length / GROUP_ROWS);
      const ids = await this.host.store().project(couponId, records, Date.now());
      const unknown = records.filter((r) => !ids.has(r.userId)).map((r) => r.userId);
      this.host.tx(() => {
        for (const [userId, id] of ids) {
          this.host.sql.exec("UPDATE issuances SET synced = 1, user_coupon_id = ? WHERE user_id = ?", id, userId);
        }
        for (const userId of unknown) {
          const gone = this.host.sql.exec("DELETE FROM issuances WHERE user_id = ? AND synced = 0", userId).rowsWritten;
          if (gone > 0) this.host.sql.exec("UPDATE coupon SET issued = issued - 1");
        }
      });
      if (unknown.length > 0) {
        this.host.rolledBack(unknown);
        log("warn", "coupon issuance rolled back: unknown user", { couponId, users: unknown });
      }
      await this.host.committed(ids);
      return ids;
    } catch (err) {
      log("warn", "user_coupons D1 write failed; alarm will retry", { couponId, rows: records.length, ...errorFields(err) });
      await this.host.failed();
      return undefined;
    }
  }
}
