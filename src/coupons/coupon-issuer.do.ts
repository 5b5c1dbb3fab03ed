import { DurableObject } from "cloudflare:workers";
import { errorFields, log } from "../shared/logger";
import { canSetQuantity, decideIssue, type IssueRefusal, type IssuerCoupon } from "./coupon.rules";
import { IssuanceRepo, ROWS_PER_BATCH, type IssuanceRecord, type IssuanceStore } from "./issuance.repo";
import { createUserCouponCache, type UserCouponCache } from "./user-coupon.cache";
import { loadConfig } from "../config";
import { primaryD1 } from "../db/client";

/** Outcome of `issue`: business refusals are values, never thrown across RPC. */
export type IssueOutcome = (
  | {
      ok: true;
      couponId: number;
      userId: number;
      issuedAt: number;
      expiresAt: number;
      /** The D1 row's id: a success is only answered once D1 holds the row. */
      userCouponId: number;
    }
  | { ok: false; code: IssueRefusal | "COUPON_NOT_FOUND" | "USER_NOT_FOUND" | "SERVICE_UNAVAILABLE" | "INTERNAL_ERROR" }
) & {
  /** D1 round trips the object made before answering (0 for a refusal it could decide alone). */
  d1Calls: number;
};

export type SetQuantityOutcome =
  | { ok: true; couponId: number; quantity: number; issuedQuantity: number }
  | { ok: false; code: "COUPON_NOT_FOUND" | "COUPON_QUANTITY_BELOW_ISSUED" | "INTERNAL_ERROR" };

/** What the DO reports about itself (tests and diagnostics). */
export interface IssuerState {
  couponId: number | null;
  quantity: number;
  issued: number;
  users: number[];
  unsynced: number;
}

/** The write-behind alarm fires this long after an issuance whose D1 write is not yet confirmed. */
export const SYNC_DELAY_MS = 500;
/** Most wins written to D1 in one group-commit batch (the projection chunk size). */
const GROUP_ROWS = ROWS_PER_BATCH;
/** Retry interval while D1 keeps failing. */
const RETRY_DELAY_MS = 1_000;

type CouponRow = { id: number; quantity: number; issued: number; starts_at: number; ends_at: number; valid_days: number; quantity_synced: number };

/**
 * One per coupon (`idFromName(String(couponId))`): the source of truth for who
 * got the coupon and how many remain.
 *
 * Decisions are made in one synchronous step on the object's SQLite storage (no
 * await between the check and the write, so no other request can interleave),
 * persisted before the answer, and only then projected into D1.
 *
 * Convergence to D1 is the DO's job, not the Worker's: `issue` writes the D1 row
 * right after persisting (so the route can answer with the user coupon id), and
 * every issuance is stored with `synced = 0` until D1 confirms it; an alarm
 * scheduled before the D1 write retries whatever is still unsynced (lost D1
 * write, crash, eviction), idempotently.
 */
export class CouponIssuer extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** D1 adapter; a field (not a constant) so tests can simulate a D1 outage. */
  store: IssuanceStore;
  private readonly userCoupons: UserCouponCache;
  private coupon: CouponRow | undefined;
  private loading: Promise<"done" | "failed"> | undefined;
  /** Wins waiting for the next group-commit batch, and whether one is being written. */
  private readonly groupQueue: { record: IssuanceRecord; resolve: (ids: Map<number, number> | undefined) => void }[] = [];
  private groupDraining = false;
  /** Users whose issuance this incarnation is writing to D1 right now (their twins hear ALREADY_ISSUED). */
  private readonly projecting = new Set<number>();
  /**
   * The stored alarm time as this object last set it (undefined: not read yet). Only this
   * object sets or deletes its alarm, so the copy saves a storage read per issuance.
   */
  private alarmAt: number | null | undefined;
  /** Whether the tables exist (created when D1 first confirms the coupon). */
  private schemaReady = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Its D1 writes and the reads that check them need the latest state: a primary session,
    // which keeps this object's queries in order for its lifetime.
    this.store = new IssuanceRepo(primaryD1(env.DB));
    this.userCoupons = createUserCouponCache(loadConfig(env));
    // Invariant: no request sees the object before its state is read, and an
    // issuance persisted by a previous incarnation but never confirmed in D1
    // gets an alarm again (covers a crash between the decision and the alarm).
    // The schema is only created once D1 knows the coupon, so requests for
    // unknown coupon ids leave no storage behind.
    ctx.blockConcurrencyWhile(async () => {
      this.schemaReady = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'coupon'").toArray().length > 0;
      this.coupon = this.readCoupon();
      this.alarmAt = await ctx.storage.getAlarm();
      if (this.coupon && this.needsSync() && this.alarmAt === null) await this.setAlarm(Date.now() + SYNC_DELAY_MS);
    });
  }

  /**
   * Issues the coupon to `userId` at `now` if the window is open, the user has
   * none yet and quantity remains. Invariant: issued count <= quantity and at
   * most one issuance per user, because check and write happen in one
   * `transactionSync` with no await in between; the decision is durable before
   * any D1 write. A refusal is answered from the object alone (no D1 call).
   *
   * A success is answered only once D1 holds the `user_coupons` row, which the
   * same batch inserts only for an existing user: an unknown user's provisional
   * issuance is rolled back (USER_NOT_FOUND), so nothing is ever issued to one.
   * When D1 cannot be reached the answer is SERVICE_UNAVAILABLE and the issuance
   * stays provisional: the alarm (or the user's retry) settles it either way.
   */
  async issue(couponId: number, userId: number, now: number): Promise<IssueOutcome> {
    const load = await this.ensureLoaded(couponId);
    let d1Calls = load.d1Calls;
    if (load.result !== "ok") return { ok: false, code: load.result, d1Calls };

    // The cached row is the persisted one: this object is its only writer and updates the copy after each write.
    const coupon = this.coupon!;
    let fresh = false;
    const decision = this.ctx.storage.transactionSync(() => {
      const mine = this.sql
        .exec<{ issued_at: number; expires_at: number; synced: number }>("SELECT issued_at, expires_at, synced FROM issuances WHERE user_id = ?", userId)
        .toArray()[0];
      // Not yet confirmed by D1 because an earlier attempt met an outage (not one still in flight):
      // settle it now, whatever the window says.
      if (mine && mine.synced === 0 && !this.projecting.has(userId)) {
        this.projecting.add(userId);
        return { ok: true as const, issuedAt: mine.issued_at, expiresAt: mine.expires_at };
      }
      const d = decideIssue(toIssuerCoupon(coupon), mine !== undefined, now);
      if (!d.ok) return d;
      this.sql.exec("INSERT INTO issuances (user_id, issued_at, expires_at, synced) VALUES (?, ?, ?, 0)", userId, d.issuedAt, d.expiresAt);
      this.sql.exec("UPDATE coupon SET issued = issued + 1");
      fresh = true;
      this.projecting.add(userId);
      return d;
    });
    if (fresh) this.coupon = { ...coupon, issued: coupon.issued + 1 };
    if (!decision.ok) return { ...decision, d1Calls };

    let ids: Map<number, number> | undefined;
    try {
      await this.scheduleSync(Date.now() + SYNC_DELAY_MS);
      d1Calls++;
      ids = await this.projectGrouped({ userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt });
    } finally {
      this.projecting.delete(userId);
    }
    if (ids === undefined) return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls };
    const userCouponId = ids.get(userId);
    if (userCouponId === undefined) return { ok: false, code: "USER_NOT_FOUND", d1Calls };
    return { ok: true, couponId, userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt, userCouponId, d1Calls };
  }

  /**
   * Changes the coupon's quantity. Invariant: quantity never drops below the
   * issued count (checked and written in one synchronous step), and D1's
   * `coupons.quantity` follows (retried by the alarm if the write fails).
   */
  async setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome> {
    const loaded = (await this.ensureLoaded(couponId)).result;
    if (loaded !== "ok") return { ok: false, code: loaded };
    const changed = this.ctx.storage.transactionSync(() => {
      const coupon = this.readCoupon()!;
      if (!canSetQuantity(quantity, coupon.issued)) return false;
      this.sql.exec("UPDATE coupon SET quantity = ?, quantity_synced = 0", quantity);
      return true;
    });
    this.coupon = this.readCoupon();
    if (!changed) return { ok: false, code: "COUPON_QUANTITY_BELOW_ISSUED" };

    await this.scheduleSync(Date.now() + SYNC_DELAY_MS);
    try {
      await this.store.updateQuantity(couponId, quantity);
      // Only mark synced if no later change overtook this one meanwhile.
      this.sql.exec("UPDATE coupon SET quantity_synced = 1 WHERE quantity = ?", quantity);
      this.coupon = this.readCoupon();
      await this.clearAlarmIfSynced();
    } catch (err) {
      log("warn", "coupon quantity D1 write failed; alarm will retry", { couponId, ...errorFields(err) });
    }
    return { ok: true, couponId, quantity, issuedQuantity: this.coupon!.issued };
  }

  /**
   * Loads the coupon from D1 now (the admin API calls this right after creating
   * it), so no issuance request ever waits for that one D1 read. Invariant: the
   * same as `ensureLoaded` (state initialised exactly once).
   */
  async prime(couponId: number): Promise<"ok" | "COUPON_NOT_FOUND" | "INTERNAL_ERROR"> {
    return (await this.ensureLoaded(couponId)).result;
  }

  /** Read-only view of the DO's state. Invariant protected: none (no writes). */
  async state(): Promise<IssuerState> {
    const coupon = this.readCoupon();
    if (!coupon) return { couponId: null, quantity: 0, issued: 0, users: [], unsynced: 0 };
    const users = this.sql.exec<{ user_id: number }>("SELECT user_id FROM issuances ORDER BY user_id").toArray().map((r) => r.user_id);
    const unsynced = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM issuances WHERE synced = 0").one().n;
    return { couponId: coupon?.id ?? null, quantity: coupon?.quantity ?? 0, issued: coupon?.issued ?? 0, users, unsynced };
  }

  /**
   * Write-behind safety net. Invariant: D1 converges to exactly the DO's list;
   * every unsynced issuance (and an unsynced quantity) is written again,
   * idempotently, until D1 confirms; while D1 fails the alarm re-arms itself.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = null; // the alarm that fired is spent
    const coupon = this.readCoupon();
    if (!coupon) return;
    const pending = this.sql
      .exec<{ user_id: number; issued_at: number; expires_at: number }>(
        "SELECT user_id, issued_at, expires_at FROM issuances WHERE synced = 0 ORDER BY user_id",
      )
      .toArray()
      // Issuances a request of this incarnation is writing right now are left to it (it re-arms on failure).
      .filter((r) => !this.projecting.has(r.user_id))
      .map((r) => ({ userId: r.user_id, issuedAt: r.issued_at, expiresAt: r.expires_at }));
    let failed = false;
    if (coupon.quantity_synced === 0) {
      try {
        await this.store.updateQuantity(coupon.id, coupon.quantity);
        this.sql.exec("UPDATE coupon SET quantity_synced = 1 WHERE quantity = ?", coupon.quantity);
      } catch (err) {
        failed = true;
        log("warn", "coupon quantity D1 retry failed", { couponId: coupon.id, ...errorFields(err) });
      }
    }
    if (pending.length > 0 && (await this.syncToD1(pending)) === undefined) failed = true;
    this.coupon = this.readCoupon();
    if (failed || this.needsSync()) await this.setAlarm(Date.now() + (failed ? RETRY_DELAY_MS : SYNC_DELAY_MS));
  }

  /**
   * Loads the coupon definition and the issuances D1 already has, once.
   * Invariant: state is initialised exactly once even when many first
   * requests arrive together (`blockConcurrencyWhile` holds every other event
   * until it is done, and the flag is re-checked inside). An unknown coupon is
   * not remembered: it may be created later. `d1Calls` is 1 when this call
   * waited for the load.
   */
  private async ensureLoaded(couponId: number): Promise<{ result: "ok" | "COUPON_NOT_FOUND" | "INTERNAL_ERROR"; d1Calls: number }> {
    let d1Calls = 0;
    if (!this.coupon) {
      d1Calls = 1;
      this.loading ??= this.ctx
        .blockConcurrencyWhile(() => this.loadFromD1(couponId))
        .finally(() => {
          this.loading = undefined;
        });
      const loaded = await this.loading;
      this.coupon = this.readCoupon();
      if (loaded === "failed" && !this.coupon) return { result: "INTERNAL_ERROR", d1Calls };
    }
    return { result: this.coupon && this.coupon.id === couponId ? "ok" : "COUPON_NOT_FOUND", d1Calls };
  }

  /** Runs under blockConcurrencyWhile; never throws (that would reset the object). */
  private async loadFromD1(couponId: number): Promise<"done" | "failed"> {
    if (this.readCoupon()) return "done";
    try {
      const snap = await this.store.load(couponId);
      if (!snap) return "done";
      this.ctx.storage.transactionSync(() => {
        this.createSchema();
        this.sql.exec(
          "INSERT INTO coupon (id, quantity, issued, starts_at, ends_at, valid_days) VALUES (?, ?, ?, ?, ?, ?)",
          couponId,
          Math.max(snap.quantity, snap.issued.length),
          snap.issued.length,
          snap.startsAt,
          snap.endsAt,
          snap.validDays,
        );
        for (const r of snap.issued) {
          this.sql.exec(
            "INSERT OR IGNORE INTO issuances (user_id, issued_at, expires_at, user_coupon_id, synced) VALUES (?, ?, ?, ?, 1)",
            r.userId,
            r.issuedAt,
            r.expiresAt,
            r.userCouponId,
          );
        }
      });
      return "done";
    } catch (err) {
      log("error", "coupon issuer could not load from D1", { couponId, ...errorFields(err) });
      return "failed";
    }
  }

  /**
   * Projects records into D1 and marks them synced; undefined when D1 failed
   * (the alarm retries). A record D1 refused for want of a user is rolled back:
   * its unit goes back to the quantity. Returns userId -> user coupon id of the
   * records D1 now holds.
   */
  private async syncToD1(records: IssuanceRecord[]): Promise<Map<number, number> | undefined> {
    const coupon = this.coupon!;
    try {
      const ids = await this.store.project(coupon.id, records, Date.now());
      const unknown = records.filter((r) => !ids.has(r.userId)).map((r) => r.userId);
      this.ctx.storage.transactionSync(() => {
        for (const [userId, id] of ids) {
          this.sql.exec("UPDATE issuances SET synced = 1, user_coupon_id = ? WHERE user_id = ?", id, userId);
        }
        for (const userId of unknown) {
          const gone = this.sql.exec("DELETE FROM issuances WHERE user_id = ? AND synced = 0", userId).rowsWritten;
          if (gone > 0) this.sql.exec("UPDATE coupon SET issued = issued - 1");
        }
      });
      if (unknown.length > 0) {
        this.coupon = this.readCoupon();
        log("warn", "coupon issuance rolled back: unknown user", { couponId: coupon.id, users: unknown });
      }
      await this.clearAlarmIfSynced();
      // The owners' cached lists are stale once their row exists in D1 (also on the write-behind path).
      if (ids.size > 0) this.ctx.waitUntil(this.userCoupons.evict([...ids.keys()]));
      return ids;
    } catch (err) {
      log("warn", "user_coupons D1 write failed; alarm will retry", { couponId: coupon.id, rows: records.length, ...errorFields(err) });
      await this.scheduleSync(Date.now() + RETRY_DELAY_MS);
      return undefined;
    }
  }

  /**
   * Group commit of wins: one D1 batch is in flight at a time, and every win that
   * arrives meanwhile joins the next one (up to GROUP_ROWS), so a storm of wins
   * costs D1 a few dozen batches instead of one per win. Each win still waits for
   * exactly one batch that carries its own row: one round trip (the time spent
   * queued behind the batch in flight is queueing, like waiting for the input gate).
   */
  private projectGrouped(record: IssuanceRecord): Promise<Map<number, number> | undefined> {
    return new Promise((resolve) => {
      this.groupQueue.push({ record, resolve });
      if (!this.groupDraining) void this.drainGroups();
    });
  }

  private async drainGroups(): Promise<void> {
    this.groupDraining = true;
    try {
      while (this.groupQueue.length > 0) {
        const group = this.groupQueue.splice(0, GROUP_ROWS);
        const ids = await this.syncToD1(group.map((g) => g.record));
        for (const g of group) g.resolve(ids);
      }
    } finally {
      this.groupDraining = false;
    }
  }

  /** Arms the alarm no later than `at` (an earlier pending alarm is kept, so a storm cannot postpone it). */
  private async scheduleSync(at: number): Promise<void> {
    this.alarmAt ??= await this.ctx.storage.getAlarm();
    if (this.alarmAt === null || this.alarmAt > at) await this.setAlarm(at);
  }

  /** Leaves no alarm behind once everything is in D1. */
  private async clearAlarmIfSynced(): Promise<void> {
    if (this.needsSync()) return;
    this.alarmAt ??= await this.ctx.storage.getAlarm();
    if (this.alarmAt !== null) {
      await this.ctx.storage.deleteAlarm();
      this.alarmAt = null;
    }
  }

  private async setAlarm(at: number): Promise<void> {
    await this.ctx.storage.setAlarm(at);
    this.alarmAt = at;
  }

  private needsSync(): boolean {
    if (this.coupon?.quantity_synced === 0) return true;
    return this.sql.exec("SELECT 1 FROM issuances WHERE synced = 0 LIMIT 1").toArray().length > 0;
  }

  private createSchema(): void {
    this.schemaReady = true;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS coupon (
      id INTEGER PRIMARY KEY,
      quantity INTEGER NOT NULL CHECK (quantity >= 1),
      issued INTEGER NOT NULL DEFAULT 0,
      starts_at INTEGER NOT NULL,
      ends_at INTEGER NOT NULL,
      valid_days INTEGER NOT NULL,
      quantity_synced INTEGER NOT NULL DEFAULT 1,
      CHECK (issued BETWEEN 0 AND quantity)
    )`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS issuances (
      user_id INTEGER PRIMARY KEY,
      issued_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      user_coupon_id INTEGER,
      synced INTEGER NOT NULL DEFAULT 0
    )`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS issuances_unsynced ON issuances (synced) WHERE synced = 0");
  }

  private readCoupon(): CouponRow | undefined {
    if (!this.schemaReady) return undefined;
    return this.sql.exec<CouponRow>("SELECT id, quantity, issued, starts_at, ends_at, valid_days, quantity_synced FROM coupon").toArray()[0];
  }
}

function toIssuerCoupon(row: CouponRow): IssuerCoupon {
  return { quantity: row.quantity, issued: row.issued, startsAt: row.starts_at, endsAt: row.ends_at, validDays: row.valid_days };
}
