import { DurableObject } from "cloudflare:workers";
import { errorFields, log } from "../shared/logger";
import { canSetQuantity, decideIssue, type IssueRefusal, type IssuerCoupon } from "./coupon.rules";
import { IssuanceRepo, type IssuanceStore } from "./issuance.repo";
import { IssuanceLoader, LOAD_PROGRESS_SCHEMA, type LoadedCoupon } from "./issuance-load";
import { BATCH_INTERVAL_MS, IssuanceProjection } from "./issuance-projection";
import { createUserCouponCache, type UserCouponCache } from "./user-coupon.cache";
import { loadConfig } from "../config";
import { placeObjects } from "../shared/object-placement";
import { primaryD1 } from "../db/client";
import { type D1Cost, HopMeter, meterD1 } from "../shared/hops";
import { homeShard, shardObjectName, UNSHARDED, type ShardAddress } from "../sharding/routing";
import { fairShare } from "../sharding/rules";
import { NOTHING_TO_GIVE, siblingPortOver, type GiveAnswer, type GiveRequest, type PushRequest, type ShardPeer, type SiblingPort } from "../sharding/transfer";
import { ShardLedger } from "../sharding/ledger";
import { ShardBalancer } from "../sharding/balancer";

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
  /** A twin of an issuance under the same Idempotency-Key that is still being written to D1: ask again. */
  | { ok: false; code: "IDEMPOTENCY_KEY_IN_PROGRESS" }
  /**
   * The caller routed by another shard count than the coupon has, or to a shard that is not
   * the user's home. Shard 0 is the authority and says the count (`shards`) and when the
   * window opens (after which the count never changes); another shard leaves `shards` out,
   * and the caller asks shard 0.
   */
  | { ok: false; code: "WRONG_SHARD"; shards?: number; startsAt: number }
) & {
  /** D1 round trips the object made before answering (0 for a refusal it could decide alone). */
  d1Calls: number;
  /** Sequential rounds of calls to sibling shards it made before answering (borrowing). */
  doCalls: number;
};

export type SetShardsOutcome =
  | { ok: true; shards: number }
  | { ok: false; code: "COUPON_NOT_FOUND" | "COUPON_SHARDS_LOCKED" | "INTERNAL_ERROR" };

export type PrimeOutcome = { result: "ok"; shards: number; startsAt: number } | { result: "COUPON_NOT_FOUND" | "INTERNAL_ERROR" };

export type SetQuantityOutcome =
  | { ok: true; couponId: number; quantity: number; issuedQuantity: number }
  | { ok: false; code: "COUPON_NOT_FOUND" | "COUPON_QUANTITY_BELOW_ISSUED" | "INTERNAL_ERROR" };

/** What the DO reports about itself (tests and diagnostics). */
export interface IssuerState {
  couponId: number | null;
  /** The coupon's quantity (all shards together). */
  quantity: number;
  /** Issued by this shard. */
  issued: number;
  users: number[];
  unsynced: number;
  shard: number;
  shards: number;
  /** Units this shard holds (its share plus what it borrowed, minus what it lent); free = held - issued. */
  held: number;
  /** Transfers this shard asked for and has not closed. */
  openTransfers: number;
  /** Issuance requests this incarnation of the object answered (not persisted: a load indicator). */
  requests: number;
  /** D1 projection batches this incarnation wrote (group commits and alarm retries; a load indicator). */
  d1Batches: number;
  /** What this incarnation's own D1 calls cost: calls, rows read and written, write transactions. */
  d1: D1Cost;
}

/** What the public availability read needs of one shard: no issuance list, no counting of unsynced rows. */
export interface IssuerCounts {
  /** False when this shard never loaded its coupon (it issued nothing). */
  loaded: boolean;
  /** The coupon's quantity as this shard knows it (shard 0's is authoritative: quantity changes go there). */
  quantity: number;
  /** Issued by this shard. */
  issued: number;
}

/** The write-behind alarm fires this long after an issuance whose D1 write is not yet confirmed. */
export const SYNC_DELAY_MS = 500;
/** Retry interval while D1 keeps failing. */
const RETRY_DELAY_MS = 1_000;
/**
 * Chunks (D1 batches of up to 100 rows) one alarm re-syncs; the rest of a backlog waits
 * RESYNC_INTERVAL_MS for the next alarm. So draining a long outage's backlog costs D1 at most
 * 4 write transactions per second per shard, and one alarm's work stays small.
 */
export const SYNC_CHUNKS_PER_ALARM = 4;
const RESYNC_INTERVAL_MS = 1_000;

type CouponRow = {
  id: number;
  quantity: number;
  issued: number;
  starts_at: number;
  ends_at: number;
  valid_days: number;
  quantity_synced: number;
  held: number;
  shard: number;
  shards: number;
  /** Stamp of the last quantity change (monotonic): D1 takes a quantity only over an older stamp. */
  quantity_version: number;
};
const COUPON_COLUMNS = "id, quantity, issued, starts_at, ends_at, valid_days, quantity_synced, held, shard, shards, quantity_version";
/**
 * Tries of "borrow, then decide again" per issuance (another request may take the unit
 * first); out of tries without a proof that every shard is empty, the answer is
 * SERVICE_UNAVAILABLE (try again), never a false COUPON_SOLD_OUT.
 */
const BORROW_TRIES = 5;

/**
 * One per coupon shard (`idFromName(shardObjectName(couponId, shard))`; shard 0 is
 * `String(couponId)`, the object of before sharding): the source of truth for who
 * got the coupon among the users whose home it is, and how many units it holds.
 *
 * Decisions are made in one synchronous step on the object's SQLite storage (no
 * await between the check and the write, so no other request can interleave),
 * persisted before the answer, and only then projected into D1.
 *
 * Sharding (docs/ARCHITECTURE.md §9, src/sharding/sharded-quantity.ts): shard 0 starts with the
 * whole quantity and is the authority on the shard count K; every other shard
 * takes its fair share from shard 0 when it is primed, and a shard that runs dry
 * borrows from its siblings. COUPON_SOLD_OUT is only answered when every shard is
 * provably empty. A user is only ever issued by their home shard, which checks
 * K and the home itself, so "one per user" stays a local check. K = 1 is exactly
 * the unsharded object.
 *
 * Convergence to D1 is the DO's job, not the Worker's: `issue` writes the D1 row
 * right after persisting (so the route can answer with the user coupon id), and
 * every issuance is stored with `synced = 0` until D1 confirms it; an alarm
 * scheduled before the D1 write retries whatever is still unsynced (lost D1
 * write, crash, eviction), idempotently. The same alarm finishes transfers a
 * crash left open.
 */
export class CouponIssuer extends DurableObject<Env> implements ShardPeer {
  private readonly sql: SqlStorage;
  /** D1 adapter; a field (not a constant) so tests can simulate a D1 outage. */
  store: IssuanceStore;
  /** How this shard reaches its siblings; a field so tests can crash a transfer half-way. */
  siblingPort: SiblingPort | undefined;
  private readonly userCoupons: UserCouponCache;
  private coupon: CouponRow | undefined;
  /** The one load of this incarnation (every request that finds no coupon waits for it). */
  private loading: Promise<{ result: "done" | "failed"; d1Calls: number }> | undefined;
  private readonly loader: IssuanceLoader;
  /** The D1 write queue (group commit, re-sync): one batch in flight per object. */
  private readonly projection: IssuanceProjection;
  /** Users whose issuance this incarnation is writing to D1 right now (their twins hear ALREADY_ISSUED). */
  private readonly projecting = new Set<number>();
  /**
   * The stored alarm time as this object last set it (undefined: not read yet). Only this
   * object sets or deletes its alarm, so the copy saves a storage read per issuance.
   */
  private alarmAt: number | null | undefined;
  /** Whether the tables exist (created when D1 first confirms the coupon). */
  private schemaReady = false;
  private readonly ledger: ShardLedger;
  private readonly balancer: ShardBalancer;
  private requests = 0;
  /** Quantity changes run one after another (each reads the quantity the previous one left). */
  private quantityChanges: Promise<unknown> = Promise.resolve();

  /** This incarnation's D1 calls, rows and write transactions (the admin view shows them). */
  private readonly d1Meter = new HopMeter();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Its D1 writes and the reads that check them need the latest state: the primary
    // (src/db/client.ts primaryD1), metered so the object's own D1 cost shows in its admin view.
    this.store = new IssuanceRepo(meterD1(primaryD1(env.DB), this.d1Meter));
    this.userCoupons = createUserCouponCache(loadConfig(env));
    const host = {
      available: () => (this.coupon ? this.coupon.held - this.coupon.issued : 0),
      adjust: (delta: number) => {
        this.sql.exec("UPDATE coupon SET held = held + ?", delta);
        this.coupon = { ...this.coupon!, held: this.coupon!.held + delta };
      },
      tx: <T>(body: () => T) => this.tx(body),
      armRecovery: () => this.scheduleSync(Date.now() + SYNC_DELAY_MS),
    };
    this.ledger = new ShardLedger(this.sql, host);
    // A shard that proved every sibling empty believes it as long as the Worker believes a sold-out answer.
    this.balancer = new ShardBalancer(host, this.ledger, () => this.siblings());
    this.projection = new IssuanceProjection({
      sql: this.sql,
      paceMs: () => ((this.coupon?.shards ?? 1) > 1 ? BATCH_INTERVAL_MS : 0),
      store: () => this.store,
      couponId: () => this.coupon!.id,
      tx: (body) => this.tx(body),
      rolledBack: () => {
        this.coupon = this.readCoupon();
        // Units of an unknown user's issuance are free here again: a drained shard tells shard 0 (the alarm re-sends).
        const shard = this.coupon?.shard ?? 0;
        void this.balancer.returned(shard).catch(() => undefined);
      },
      committed: async (ids) => {
        await this.clearAlarmIfSynced();
        // The owners' cached lists are stale once their row exists in D1 (also on the write-behind path).
        if (ids.size > 0) this.ctx.waitUntil(this.userCoupons.evict([...ids.keys()]));
      },
      failed: () => this.scheduleSync(Date.now() + RETRY_DELAY_MS),
    });
    this.loader = new IssuanceLoader({
      sql: this.sql,
      store: () => this.store,
      schemaReady: () => this.schemaReady,
      createSchema: () => this.createSchema(),
      transactionSync: (body) => this.ctx.storage.transactionSync(body),
      finish: (c) => this.insertCoupon(c),
    });
    // Invariant: no request sees the object before its state is read, and an
    // issuance persisted by a previous incarnation but never confirmed in D1
    // (or a transfer left open) gets an alarm again (covers a crash between the
    // decision and the alarm). The schema is only created once D1 knows the
    // coupon, so requests for unknown coupon ids leave no storage behind.
    ctx.blockConcurrencyWhile(async () => {
      this.schemaReady = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'coupon'").toArray().length > 0;
      if (this.schemaReady) this.upgradeSchema();
      this.coupon = this.readCoupon();
      this.alarmAt = await ctx.storage.getAlarm();
      if (this.coupon && this.needsSync() && this.alarmAt === null) await this.setAlarm(Date.now() + SYNC_DELAY_MS);
    });
  }

  /**
   * Issues the coupon to `userId` at `now` if the window is open, the user has
   * none yet and quantity remains. Invariant: issued count <= units held and at
   * most one issuance per user, because check and write happen in one
   * `transactionSync` with no await in between, and a user is only issued by
   * their home shard (`route` is checked against this shard's count and index);
   * the decision is durable before any D1 write. A refusal is answered from the
   * object alone (no D1 call); a sharded shard out of units borrows first and
   * says COUPON_SOLD_OUT only when every shard is empty.
   *
   * A success is answered only once D1 holds the `user_coupons` row, which the
   * same batch inserts only for an existing user: an unknown user's provisional
   * issuance is rolled back (USER_NOT_FOUND), so nothing is ever issued to one.
   * When D1 cannot be reached the answer is SERVICE_UNAVAILABLE and the issuance
   * stays provisional: the alarm (or the user's retry) settles it either way.
   */
  async issue(couponId: number, userId: number, now: number, route: ShardAddress = UNSHARDED, requestKey?: string): Promise<IssueOutcome> {
    this.requests++;
    const load = await this.ensureLoaded(couponId, route.shard);
    let d1Calls = load.d1Calls;
    let doCalls = 0;
    // A load D1 interrupted is no fault of the request: it resumes at its cursor on the next one (503, try again).
    if (load.result === "INTERNAL_ERROR") return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls, doCalls };
    if (load.result !== "ok") return { ok: false, code: load.result, d1Calls, doCalls };
    const coupon = this.coupon!;
    if (route.shards !== coupon.shards || homeShard(userId, coupon.shards) !== coupon.shard) {
      return { ok: false, code: "WRONG_SHARD", shards: coupon.shard === 0 ? coupon.shards : undefined, startsAt: coupon.starts_at, d1Calls, doCalls };
    }

    let decision = this.decide(userId, now, requestKey);
    if (decision.ok && "userCouponId" in decision) {
      // A twin of an issuance already in D1 under the same key: the same answer.
      return { ok: true, couponId, userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt, userCouponId: decision.userCouponId, d1Calls, doCalls };
    }
    if (!decision.ok && decision.code === "COUPON_SOLD_OUT" && coupon.shards > 1) {
      let proven = false;
      if (this.neverHeld()) {
        // Not primed (the admin call failed, or a coupon written straight into D1): take the fair share first.
        await this.balancer.prefetch({ at: { shard: coupon.shard, shards: coupon.shards }, extra: fairShare(coupon.quantity, coupon.shards) });
        doCalls++;
        decision = this.decide(userId, now, requestKey);
      }
      for (let tries = 0; tries < BORROW_TRIES && !decision.ok && decision.code === "COUPON_SOLD_OUT"; tries++) {
        // The decision runs the moment a unit is seen free (no other borrower can take it in between).
        const borrowed = await this.balancer.borrow({
          at: { shard: coupon.shard, shards: coupon.shards },
          need: 1,
          extra: this.borrowBatch(),
          take: () => this.decide(userId, now, requestKey),
        });
        doCalls += borrowed.rounds;
        if (borrowed.result === "unknown") break;
        decision = borrowed.taken ?? this.decide(userId, now, requestKey);
        proven = borrowed.result === "dry";
        if (proven) break;
      }
      if (!decision.ok && decision.code === "COUPON_SOLD_OUT" && !proven) return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls, doCalls };
    }
    if (!decision.ok) return { ...decision, d1Calls, doCalls };
    if ("userCouponId" in decision) {
      return { ok: true, couponId, userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt, userCouponId: decision.userCouponId, d1Calls, doCalls };
    }

    let ids: Map<number, number> | undefined;
    try {
      await this.scheduleSync(Date.now() + SYNC_DELAY_MS);
      d1Calls++;
      ids = await this.projection.project([{ userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt }]);
    } finally {
      this.projecting.delete(userId);
    }
    if (ids === undefined) return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls, doCalls };
    const userCouponId = ids.get(userId);
    if (userCouponId === undefined) return { ok: false, code: "USER_NOT_FOUND", d1Calls, doCalls };
    return { ok: true, couponId, userId, issuedAt: decision.issuedAt, expiresAt: decision.expiresAt, userCouponId, d1Calls, doCalls };
  }

  /**
   * The one synchronous decision of `issue` (check and write); marks the user as being projected.
   * `requestKey`: the request's Idempotency-Key, stored with the issuance. A twin under the same key
   * gets the issuance's own answer (its D1 row id once written; "in progress" while it is being
   * written), never COUPON_ALREADY_ISSUED: that refusal, stored under the key first, would replace
   * the winner's 201 (issue 19). Another key, or none, hears ALREADY_ISSUED as before.
   */
  private decide(
    userId: number,
    now: number,
    requestKey?: string,
  ):
    | { ok: true; issuedAt: number; expiresAt: number }
    | { ok: true; issuedAt: number; expiresAt: number; userCouponId: number }
    | { ok: false; code: IssueRefusal | "IDEMPOTENCY_KEY_IN_PROGRESS" } {
    return this.tx(() => {
      // The cached row is the persisted one: this object is its only writer and updates the copy after each write.
      const coupon = this.coupon!;
      const mine = this.sql
        .exec<{ issued_at: number; expires_at: number; synced: number; request_key: string | null; user_coupon_id: number | null }>(
          "SELECT issued_at, expires_at, synced, request_key, user_coupon_id FROM issuances WHERE user_id = ?",
          userId,
        )
        .toArray()[0];
      // Not yet confirmed by D1 because an earlier attempt met an outage (not one still in flight):
      // settle it now, whatever the window says.
      if (mine && mine.synced === 0 && !this.projecting.has(userId)) {
        this.projecting.add(userId);
        return { ok: true as const, issuedAt: mine.issued_at, expiresAt: mine.expires_at };
      }
      if (mine && requestKey !== undefined && mine.request_key === requestKey) {
        if (mine.synced === 0 || mine.user_coupon_id === null) return { ok: false as const, code: "IDEMPOTENCY_KEY_IN_PROGRESS" as const };
        return { ok: true as const, issuedAt: mine.issued_at, expiresAt: mine.expires_at, userCouponId: mine.user_coupon_id };
      }
      const d = decideIssue(toIssuerCoupon(coupon), mine !== undefined, now);
      if (!d.ok) return d;
      this.sql.exec(
        "INSERT INTO issuances (user_id, issued_at, expires_at, synced, request_key) VALUES (?, ?, ?, 0, ?)",
        userId,
        d.issuedAt,
        d.expiresAt,
        requestKey ?? null,
      );
      this.sql.exec("UPDATE coupon SET issued = issued + 1");
      this.coupon = { ...coupon, issued: coupon.issued + 1 };
      this.projecting.add(userId);
      return d;
    });
  }

  /**
   * Changes the coupon's quantity (shard 0, which holds the quantity's changes).
   * Invariant: quantity never drops below the issued count: a cut is taken from
   * the units this shard holds free, after borrowing back from its siblings what
   * it lacks, all checked and written in one synchronous step; D1's
   * `coupons.quantity` follows (retried by the alarm if the write fails).
   * Invariant (issue 19): D1's `issued_quantity <= quantity` never refuses a win.
   * A raise is written to D1 *before* the object applies it (no shard can issue a
   * raised unit before D1 has the quantity that counts it); a cut after (D1 then
   * still allows every issuance the objects made). Every write carries the change's
   * stamp (`quantity_version`) and lands only over an older one, so a late alarm
   * write of an older quantity never rolls D1 back. Changes are serialised.
   */
  async setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome> {
    const turn = this.quantityChanges.then(() => this.changeQuantity(couponId, quantity));
    this.quantityChanges = turn.catch(() => undefined);
    return turn;
  }

  private async changeQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome> {
    const loaded = (await this.ensureLoaded(couponId, 0)).result;
    if (loaded !== "ok") return { ok: false, code: loaded };
    if (!canSetQuantity(quantity, 0)) return { ok: false, code: "COUPON_QUANTITY_BELOW_ISSUED" };
    if (quantity > this.coupon!.quantity) {
      // A raise: D1 first. If D1 cannot take it nothing changes here (the alarm rewrites the current
      // quantity with a newer stamp, in case the failed write landed after all); the admin retries.
      const version = this.nextQuantityVersion();
      try {
        await this.store.updateQuantity(couponId, quantity, version);
      } catch (err) {
        log("warn", "coupon quantity raise not written to D1; not applied", { couponId, ...errorFields(err) });
        this.tx(() => this.sql.exec("UPDATE coupon SET quantity_synced = 0"));
        this.coupon = this.readCoupon();
        await this.scheduleSync(Date.now() + RETRY_DELAY_MS);
        return { ok: false, code: "INTERNAL_ERROR" };
      }
      this.tx(() => {
        const c = this.coupon!;
        const delta = quantity - c.quantity;
        this.sql.exec("UPDATE coupon SET quantity = ?, held = held + ?, quantity_version = ?", quantity, delta, version);
        this.coupon = { ...c, quantity, held: c.held + delta, quantity_version: version };
      });
      return { ok: true, couponId, quantity, issuedQuantity: this.coupon!.issued };
    }
    const apply = () =>
      this.tx(() => {
        const coupon = this.coupon!;
        const delta = quantity - coupon.quantity;
        if (coupon.held + delta < coupon.issued) return false;
        this.sql.exec("UPDATE coupon SET quantity = ?, held = held + ?, quantity_synced = 0", quantity, delta);
        this.coupon = { ...coupon, quantity, held: coupon.held + delta, quantity_synced: 0 };
        return true;
      });
    let changed = apply();
    if (!changed && this.coupon!.shards > 1) {
      // Not enough free here: take back from the siblings what the cut needs, then try again.
      const need = this.coupon!.quantity - quantity;
      const borrowed = await this.balancer.borrow({ at: { shard: 0, shards: this.coupon!.shards }, need, extra: 0 });
      if (borrowed.result === "unknown") return { ok: false, code: "INTERNAL_ERROR" };
      changed = apply();
    }
    if (!changed) return { ok: false, code: "COUPON_QUANTITY_BELOW_ISSUED" };

    await this.scheduleSync(Date.now() + SYNC_DELAY_MS);
    await this.writeQuantity();
    return { ok: true, couponId, quantity, issuedQuantity: this.coupon!.issued };
  }

  /** A stamp newer than every earlier one of this coupon (persisted with the write it stamps). */
  private nextQuantityVersion(): number {
    return Math.max(Date.now(), this.coupon!.quantity_version + 1);
  }

  /**
   * Writes the current quantity to D1 under a new stamp, and marks it synced unless a
   * later change overtook it meanwhile. False when D1 failed (the alarm retries).
   */
  private async writeQuantity(): Promise<boolean> {
    const c = this.coupon!;
    const version = this.nextQuantityVersion();
    this.tx(() => this.sql.exec("UPDATE coupon SET quantity_version = ?", version));
    this.coupon = { ...c, quantity_version: version };
    try {
      await this.store.updateQuantity(c.id, c.quantity, version);
    } catch (err) {
      log("warn", "coupon quantity D1 write failed; alarm will retry", { couponId: c.id, ...errorFields(err) });
      return false;
    }
    this.sql.exec("UPDATE coupon SET quantity_synced = 1 WHERE quantity = ? AND quantity_version = ?", c.quantity, version);
    this.coupon = this.readCoupon();
    await this.clearAlarmIfSynced();
    return true;
  }

  /**
   * Sets the shard count this shard serves under (the admin's raise, fanned out to
   * every shard, shard 0 last). Invariant: the count only changes before the window
   * opens and while this shard has issued nothing, so no user ever changes home
   * after an issuance; it never goes down.
   */
  async setShards(couponId: number, shard: number, shards: number, now: number): Promise<SetShardsOutcome> {
    const load = await this.ensureLoaded(couponId, shard);
    if (load.result !== "ok") return { ok: false, code: load.result };
    const c = this.coupon!;
    if (shards === c.shards) return { ok: true, shards };
    if (shards < c.shards || shard >= shards || now >= c.starts_at || c.issued > 0) return { ok: false, code: "COUPON_SHARDS_LOCKED" };
    this.tx(() => this.sql.exec("UPDATE coupon SET shards = ?", shards));
    this.coupon = { ...c, shards };
    return { ok: true, shards };
  }

  /**
   * Loads the coupon from D1 now (the admin API calls this right after creating
   * it), so no issuance request ever waits for that one D1 read; a shard other
   * than 0 that never held units then takes its fair share from shard 0, so the
   * quantity starts split. Invariant: the same as `ensureLoaded` (state
   * initialised exactly once); the share is taken once.
   */
  async prime(couponId: number, shard = 0): Promise<PrimeOutcome> {
    const load = await this.ensureLoaded(couponId, shard);
    if (load.result !== "ok") return { result: load.result };
    const c = this.coupon!;
    if (this.neverHeld()) await this.balancer.prefetch({ at: { shard: c.shard, shards: c.shards }, extra: fairShare(c.quantity, c.shards) });
    return { result: "ok", shards: c.shards, startsAt: c.starts_at };
  }

  /**
   * A sibling asks for units (ShardPeer.give, src/sharding/balancer.ts: the giving side): granted at
   * most once per transfer id. Invariant: a grant never exceeds what this shard holds free. A coupon
   * that does not exist answers NOTHING_TO_GIVE; a load D1 cannot finish throws (the asker re-sends).
   */
  async give(couponId: number, shard: number, request: GiveRequest): Promise<GiveAnswer> {
    const load = await this.ensureLoaded(couponId, shard);
    if (load.result === "COUPON_NOT_FOUND") return NOTHING_TO_GIVE;
    if (load.result !== "ok") throw new Error(`coupon shard ${couponId}/${shard} cannot give: ${load.result}`);
    return this.balancer.answer(request, { shard, shards: this.coupon!.shards });
  }

  /** Shard 0: a drained sibling hands back units that came back to it (ShardPeer.push). Once per id. */
  async push(couponId: number, shard: number, push: PushRequest): Promise<void> {
    const load = await this.ensureLoaded(couponId, shard);
    if (load.result !== "ok") throw new Error(`coupon shard ${couponId}/${shard} cannot take a push: ${load.result}`);
    this.balancer.accepted(push);
  }

  /** A sibling applied these grants (ShardPeer.acknowledge). Idempotent; a shard that never loaded granted nothing and ignores it. */
  async acknowledge(_couponId: number, _shard: number, transferIds: string[]): Promise<void> {
    this.coupon ??= this.readCoupon();
    if (!this.coupon) return;
    this.balancer.acknowledged(transferIds);
  }

  /**
   * The two numbers a sale page polls (GET /coupons/{id}): one row of the object's storage, never a
   * D1 load (a shard that never loaded issued nothing). Invariant protected: none (no writes).
   */
  async counts(): Promise<IssuerCounts> {
    const coupon = this.readCoupon();
    return coupon ? { loaded: true, quantity: coupon.quantity, issued: coupon.issued } : { loaded: false, quantity: 0, issued: 0 };
  }

  /** Read-only view of the DO's state. Invariant protected: none (no writes). */
  async state(): Promise<IssuerState> {
    const coupon = this.readCoupon();
    if (!coupon) return { couponId: null, quantity: 0, issued: 0, users: [], unsynced: 0, shard: 0, shards: 1, held: 0, openTransfers: 0, requests: this.requests, d1Batches: this.projection.batches, d1: this.d1Meter.d1Cost() };
    const users = this.sql.exec<{ user_id: number }>("SELECT user_id FROM issuances ORDER BY user_id").toArray().map((r) => r.user_id);
    const unsynced = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM issuances WHERE synced = 0").one().n;
    const openTransfers = this.ledger.openTransfers(coupon.shard).length;
    return {
      couponId: coupon.id,
      quantity: coupon.quantity,
      issued: coupon.issued,
      users,
      unsynced,
      shard: coupon.shard,
      shards: coupon.shards,
      held: coupon.held,
      openTransfers,
      requests: this.requests,
      d1Batches: this.projection.batches,
      d1: this.d1Meter.d1Cost(),
    };
  }

  /**
   * Write-behind safety net. Invariant: D1 converges to exactly the DO's list;
   * every unsynced issuance (and an unsynced quantity) is written again,
   * idempotently, until D1 confirms; transfers a crash left open are re-sent
   * under their ids and owed acknowledgements sent; while anything fails the
   * alarm re-arms itself.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = null; // the alarm that fired is spent
    const coupon = this.readCoupon();
    if (!coupon) return;
    this.coupon = coupon;
    let failed = false;
    if (this.ledger.needsRecovery()) {
      try {
        if (!(await this.balancer.recover(coupon.shard))) failed = true;
      } catch (err) {
        failed = true;
        log("warn", "coupon shard transfer recovery failed", { couponId: coupon.id, shard: coupon.shard, ...errorFields(err) });
      }
    }
    if (this.coupon!.quantity_synced === 0 && !(await this.writeQuantity())) failed = true;
    // Issuances a request of this incarnation is writing right now are left to it (it re-arms on failure).
    const resynced = await this.projection.resync({ maxChunks: SYNC_CHUNKS_PER_ALARM, skip: (userId) => this.projecting.has(userId) });
    if (resynced === "failed") failed = true;
    this.coupon = this.readCoupon();
    if (failed || this.needsSync()) {
      await this.setAlarm(Date.now() + (failed ? RETRY_DELAY_MS : resynced === "capped" ? RESYNC_INTERVAL_MS : SYNC_DELAY_MS));
    }
  }

  /** A shard other than 0 that has not taken its share yet (it holds and issued nothing). */
  private neverHeld(): boolean {
    const c = this.coupon!;
    return c.shard > 0 && c.shards > 1 && c.held === 0 && c.issued === 0 && !this.ledger.hasOpen();
  }

  /** The units a sharded shard borrows beyond its need: an eighth of its fair share. */
  private borrowBatch(): number {
    const c = this.coupon!;
    return Math.max(1, Math.ceil(fairShare(c.quantity, c.shards) / 8));
  }

  /** The stubs of this coupon's sibling shards (or the port a test put in). */
  private siblings(): SiblingPort {
    if (this.siblingPort) return this.siblingPort;
    const couponId = this.coupon!.id;
    // A sibling created by this call is placed where the Worker would place it (DO_LOCATION_HINT).
    const ns = placeObjects(this.env.COUPON_ISSUER, loadConfig(this.env).doLocationHint);
    return siblingPortOver(couponId, (shard) => ns.get(ns.idFromName(shardObjectName(couponId, shard))));
  }

  /** One synchronous transaction; if it throws (rolled back), the memory copies are read again. */
  private tx<T>(body: () => T): T {
    try {
      return this.ctx.storage.transactionSync(body);
    } catch (err) {
      this.coupon = this.readCoupon();
      this.ledger.invalidate();
      throw err;
    }
  }

  /**
   * Loads the coupon definition and the issuances D1 already has for the users
   * whose home this shard is, once (src/coupons/issuance-load.ts: bounded steps,
   * resumable). Invariant: nothing is decided before the load has finished (the
   * coupon row is written by its last step), and one incarnation runs one load
   * however many first requests arrive together (they share `loading`). An
   * unknown coupon is not remembered: it may be created later. `d1Calls` is the
   * number of load steps this call waited for.
   */
  private async ensureLoaded(couponId: number, shard: number): Promise<{ result: "ok" | "COUPON_NOT_FOUND" | "INTERNAL_ERROR"; d1Calls: number }> {
    let d1Calls = 0;
    // The memory copy is dropped after a rolled-back transaction: a stored coupon row is never loaded again.
    this.coupon ??= this.readCoupon();
    if (!this.coupon) {
      this.loading ??= this.loader.load(couponId, shard).finally(() => {
        this.loading = undefined;
      });
      const loaded = await this.loading;
      d1Calls = loaded.d1Calls;
      this.coupon = this.readCoupon();
      if (loaded.result === "failed" && !this.coupon) return { result: "INTERNAL_ERROR", d1Calls };
    }
    return { result: this.coupon && this.coupon.id === couponId && this.coupon.shard === shard ? "ok" : "COUPON_NOT_FOUND", d1Calls };
  }

  /** The load's last step: the coupon row (counts as the load found them; D1 already has its quantity). */
  private insertCoupon(c: LoadedCoupon): void {
    this.sql.exec(
      `INSERT INTO coupon (${COUPON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, 0)`,
      c.couponId,
      c.quantity,
      c.issued,
      c.startsAt,
      c.endsAt,
      c.validDays,
      c.held,
      c.shard,
      c.shards,
    );
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
    if (this.ledger.needsRecovery()) return true;
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
      held INTEGER NOT NULL,
      shard INTEGER NOT NULL DEFAULT 0,
      shards INTEGER NOT NULL DEFAULT 1,
      quantity_version INTEGER NOT NULL DEFAULT 0,
      CHECK (issued BETWEEN 0 AND quantity),
      CHECK (issued <= held)
    )`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS issuances (
      user_id INTEGER PRIMARY KEY,
      issued_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      user_coupon_id INTEGER,
      synced INTEGER NOT NULL DEFAULT 0,
      request_key TEXT
    )`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS issuances_unsynced ON issuances (synced) WHERE synced = 0");
    this.sql.exec(LOAD_PROGRESS_SCHEMA);
    this.ledger.createSchema();
  }

  /**
   * An object created before sharding has no `held`, `shard` or `shards` columns and no
   * ledger: it was the coupon's only object, so it holds the whole quantity as shard 0 of 1.
   */
  private upgradeSchema(): void {
    // An object of before the paged load has no progress table (and, having its coupon row, never needs one).
    this.sql.exec(LOAD_PROGRESS_SCHEMA);
    const columns = new Set(this.sql.exec<{ name: string }>("PRAGMA table_info(coupon)").toArray().map((c) => c.name));
    // Issue 19: the quantity's stamp and the issuance's Idempotency-Key.
    if (!columns.has("quantity_version")) this.sql.exec("ALTER TABLE coupon ADD COLUMN quantity_version INTEGER NOT NULL DEFAULT 0");
    const issuanceColumns = new Set(this.sql.exec<{ name: string }>("PRAGMA table_info(issuances)").toArray().map((c) => c.name));
    if (!issuanceColumns.has("request_key")) this.sql.exec("ALTER TABLE issuances ADD COLUMN request_key TEXT");
    // A sharded object of before issue 19: its ledger gains the drain state and the push tables (idempotent).
    if (columns.has("held")) return this.ledger.createSchema();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("ALTER TABLE coupon ADD COLUMN held INTEGER NOT NULL DEFAULT 0");
      this.sql.exec("UPDATE coupon SET held = quantity");
      this.sql.exec("ALTER TABLE coupon ADD COLUMN shard INTEGER NOT NULL DEFAULT 0");
      this.sql.exec("ALTER TABLE coupon ADD COLUMN shards INTEGER NOT NULL DEFAULT 1");
      this.ledger.createSchema();
    });
  }

  private readCoupon(): CouponRow | undefined {
    if (!this.schemaReady) return undefined;
    return this.sql.exec<CouponRow>(`SELECT ${COUPON_COLUMNS} FROM coupon`).toArray()[0];
  }
}

function toIssuerCoupon(row: CouponRow): IssuerCoupon {
  // A shard decides on the units it holds: "quantity remains" means it holds one free.
  return { quantity: row.held, issued: row.issued, startsAt: row.starts_at, endsAt: row.ends_at, validDays: row.valid_days };
}
