import { DurableObject } from "cloudflare:workers";
import { errorFields, log } from "../shared/logger";
import { ObjectAlarm } from "../shared/object-alarm";
import { IssuanceRepo, type IssuanceStore } from "./issuance.repo";
import { IssuanceLoader } from "./issuance-load";
import { BATCH_INTERVAL_MS, IssuanceProjection } from "./issuance-projection";
import { createUserCouponCache, type UserCouponCache } from "./user-coupon.cache";
import { CouponShardStore, type LocalIssue } from "./coupon-shard.store";
import { CouponQuantity } from "./coupon-quantity";
import { loadConfig } from "../config";
import { placeObjects } from "../shared/object-placement";
import { primaryD1 } from "../db/client";
import { HopMeter, meterD1 } from "../shared/hops";
import { homeShard, shardObjectName, UNSHARDED, type ShardAddress } from "../sharding/routing";
import { fairShare } from "../sharding/rules";
import {
  NOTHING_TO_GIVE,
  siblingPortOver,
  type GiveAnswer,
  type GiveRequest,
  type PushRequest,
  type ShardPeer,
  type SiblingPort,
} from "../sharding/transfer";
import { ShardLedger } from "../sharding/ledger";
import { ShardBalancer } from "../sharding/balancer";
import type {
  IssueOutcome,
  IssueRequest,
  IssuerCounts,
  IssuerState,
  PrimeOutcome,
  SetQuantityOutcome,
  SetShardsOutcome,
} from "./coupon-issuer.types";

export type * from "./coupon-issuer.types";

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
/**
 * Tries of "borrow, then decide again" per issuance (another request may take the unit
 * first); out of tries without shard 0's word that nothing is left anywhere, the answer is
 * SERVICE_UNAVAILABLE (try again), never a false COUPON_SOLD_OUT.
 */
const BORROW_TRIES = 5;

/**
 * One per coupon shard (`idFromName(shardObjectName(couponId, shard))`; shard 0 is
 * `String(couponId)`, the object of before sharding): the source of truth for who
 * got the coupon among the users whose home it is, and how many units it holds.
 *
 * Decisions are made in one synchronous step on the object's SQLite storage
 * (CouponShardStore; no await between the check and the write, so no other request
 * can interleave), persisted before the answer, and only then projected into D1.
 *
 * Sharding (docs/ARCHITECTURE.md §9, docs/SHARDING.md, src/sharding/): shard 0 starts with
 * the whole quantity, is the reserve and the authority on the shard count K; every other
 * shard takes its fair share from shard 0 when it is primed, and a shard that runs dry
 * claims from shard 0. COUPON_SOLD_OUT is shard 0's word: it lacks the unit and every
 * sibling is drained. A user is only ever issued by their home shard, which checks K and
 * the home itself, so "one per user" stays a local check. K = 1 is exactly the unsharded object.
 *
 * Convergence to D1 is the DO's job, not the Worker's: `issue` writes the D1 row
 * right after persisting (so the route can answer with the user coupon id), and
 * every issuance is stored with `synced = 0` until D1 confirms it; an alarm
 * scheduled before the D1 write retries whatever is still unsynced (lost D1
 * write, crash, eviction), idempotently. The same alarm finishes transfers a
 * crash left open.
 */
export class CouponIssuer extends DurableObject<Env> implements ShardPeer {
  /** D1 adapter; a field (not a constant) so tests can simulate a D1 outage. */
  store: IssuanceStore;
  /** How this shard reaches its siblings; a field so tests can crash a transfer half-way. */
  siblingPort: SiblingPort | undefined;
  /** The coupon row and the issuances, on the object's SQLite. */
  private readonly shardStore: CouponShardStore;
  private readonly userCoupons: UserCouponCache;
  /** The one load of this incarnation (every request that finds no coupon waits for it). */
  private loading: Promise<{ result: "done" | "failed"; d1Calls: number }> | undefined;
  private readonly loader: IssuanceLoader;
  /** The D1 write queue (group commit, re-sync): one batch in flight per object. */
  private readonly projection: IssuanceProjection;
  /** Users whose issuance this incarnation is writing to D1 right now (their twins hear ALREADY_ISSUED). */
  private readonly projecting = new Set<number>();
  private readonly alarm_: ObjectAlarm;
  private readonly ledger: ShardLedger;
  private readonly balancer: ShardBalancer;
  private readonly quantity: CouponQuantity;
  private requests = 0;
  /** Quantity changes run one after another (each reads the quantity the previous one left). */
  private quantityChanges: Promise<unknown> = Promise.resolve();

  /** This incarnation's D1 calls, rows and write transactions (the admin view shows them). */
  private readonly d1Meter = new HopMeter();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Its D1 writes and the reads that check them need the latest state: the primary
    // (src/db/client.ts primaryD1), metered so the object's own D1 cost shows in its admin view.
    this.store = new IssuanceRepo(meterD1(primaryD1(env.DB), this.d1Meter));
    this.userCoupons = createUserCouponCache(loadConfig(env));
    this.alarm_ = new ObjectAlarm(ctx.storage);
    this.shardStore = new CouponShardStore(ctx.storage);
    this.ledger = new ShardLedger(ctx.storage.sql, this.shardStore);
    this.shardStore.onRollback = () => this.ledger.invalidate();
    const host = {
      available: () => this.shardStore.available(),
      adjust: (delta: number) => this.shardStore.adjust(delta),
      tx: this.shardStore.tx,
      armRecovery: () => this.alarm_.armBy(Date.now() + SYNC_DELAY_MS),
    };
    this.balancer = new ShardBalancer(host, this.ledger, () => this.siblings());
    this.quantity = new CouponQuantity({
      shardStore: this.shardStore,
      d1: () => this.store,
      borrowBack: (need) => this.balancer.borrow({ at: { shard: 0, shards: this.shardStore.coupon()!.shards }, need, extra: 0 }),
      arm: (when) => this.alarm_.armBy(Date.now() + (when === "retry" ? RETRY_DELAY_MS : SYNC_DELAY_MS)),
      clearAlarmIfSynced: () => this.clearAlarmIfSynced(),
    });
    this.projection = new IssuanceProjection({
      sql: ctx.storage.sql,
      paceMs: () => ((this.shardStore.coupon()?.shards ?? 1) > 1 ? BATCH_INTERVAL_MS : 0),
      store: () => this.store,
      couponId: () => this.shardStore.coupon()!.id,
      tx: this.shardStore.tx,
      rolledBack: () => {
        const coupon = this.shardStore.reload();
        // Units of an unknown user's issuance are free here again: a drained shard tells shard 0 (the alarm re-sends).
        void this.balancer.returned(coupon?.shard ?? 0).catch(() => undefined);
      },
      committed: async (ids) => {
        await this.clearAlarmIfSynced();
        // The owners' cached lists are stale once their row exists in D1 (also on the write-behind path).
        if (ids.size > 0) this.ctx.waitUntil(this.userCoupons.evict([...ids.keys()]));
      },
      failed: () => this.alarm_.armBy(Date.now() + RETRY_DELAY_MS),
    });
    this.loader = new IssuanceLoader({
      sql: ctx.storage.sql,
      store: () => this.store,
      schemaReady: () => this.shardStore.schemaReady(),
      createSchema: () => this.shardStore.createSchema(() => this.ledger.createSchema()),
      transactionSync: (body) => this.ctx.storage.transactionSync(body),
      finish: (c) => this.shardStore.insertCoupon(c),
    });
    // Invariant: no request sees the object before its state is read, and an
    // issuance persisted by a previous incarnation but never confirmed in D1
    // (or a transfer left open) gets an alarm again (covers a crash between the
    // decision and the alarm). The schema is only created once D1 knows the
    // coupon, so requests for unknown coupon ids leave no storage behind.
    ctx.blockConcurrencyWhile(async () => {
      this.shardStore.upgradeSchema(() => this.ledger.createSchema());
      const coupon = this.shardStore.reload();
      const alarmAt = await this.alarm_.load();
      if (coupon && this.needsSync() && alarmAt === null) await this.alarm_.set(Date.now() + SYNC_DELAY_MS);
    });
  }

  /**
   * Issues the coupon to `userId` at `now` if the window is open, the user has
   * none yet and quantity remains. Invariant: issued count <= units held and at
   * most one issuance per user, because check and write happen in one
   * transaction with no await in between, and a user is only issued by
   * their home shard (`at` is checked against this shard's count and index);
   * the decision is durable before any D1 write. A refusal is answered from the
   * object alone (no D1 call); a sharded shard out of units claims from shard 0 first and
   * says COUPON_SOLD_OUT only on shard 0's word that nothing is left anywhere.
   *
   * A success is answered only once D1 holds the `user_coupons` row, which the
   * same batch inserts only for an existing user: an unknown user's provisional
   * issuance is rolled back (USER_NOT_FOUND), so nothing is ever issued to one.
   * When D1 cannot be reached the answer is SERVICE_UNAVAILABLE and the issuance
   * stays provisional: the alarm (or the user's retry) settles it either way.
   */
  async issue({ couponId, userId, now, at = UNSHARDED, requestKey }: IssueRequest): Promise<IssueOutcome> {
    this.requests++;
    const load = await this.ensureLoaded(couponId, at.shard);
    let d1Calls = load.d1Calls;
    let doCalls = 0;
    // A load D1 interrupted is no fault of the request: it resumes at its cursor on the next one (503, try again).
    if (load.result === "INTERNAL_ERROR") return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls, doCalls };
    if (load.result !== "ok") return { ok: false, code: load.result, d1Calls, doCalls };
    const coupon = this.shardStore.coupon()!;
    if (at.shards !== coupon.shards || homeShard(userId, coupon.shards) !== coupon.shard) {
      return {
        ok: false,
        code: "WRONG_SHARD",
        shards: coupon.shard === 0 ? coupon.shards : undefined,
        startsAt: coupon.starts_at,
        d1Calls,
        doCalls,
      };
    }
    const self: ShardAddress = { shard: coupon.shard, shards: coupon.shards };

    /** A win already in D1 (a twin under the same key, or one written meanwhile): the same answer. */
    const known = (d: { issuedAt: number; expiresAt: number; userCouponId: number }): IssueOutcome => ({
      ok: true,
      couponId,
      userId,
      issuedAt: d.issuedAt,
      expiresAt: d.expiresAt,
      userCouponId: d.userCouponId,
      d1Calls,
      doCalls,
    });
    let decision = this.decide(userId, now, requestKey);
    if (decision.ok && "userCouponId" in decision) return known(decision);
    if (!decision.ok && decision.code === "COUPON_SOLD_OUT" && coupon.shards > 1) {
      let proven = false;
      if (this.neverHeld()) {
        // Not primed (the admin call failed, or a coupon written straight into D1): take the fair share first.
        await this.balancer.prefetch({ at: self, extra: fairShare(coupon.quantity, coupon.shards) });
        doCalls++;
        decision = this.decide(userId, now, requestKey);
      }
      for (let tries = 0; tries < BORROW_TRIES && !decision.ok && decision.code === "COUPON_SOLD_OUT"; tries++) {
        // The decision runs the moment a unit is seen free (no other borrower can take it in between).
        const borrowed = await this.balancer.borrow({
          at: self,
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
      if (!decision.ok && decision.code === "COUPON_SOLD_OUT" && !proven)
        return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls, doCalls };
    }
    if (!decision.ok) return { ...decision, d1Calls, doCalls };
    if ("userCouponId" in decision) return known(decision);

    let ids: Map<number, number> | undefined;
    try {
      await this.alarm_.armBy(Date.now() + SYNC_DELAY_MS);
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

  /** The one synchronous decision of `issue` (CouponShardStore.issueLocal), in its own transaction. */
  private decide(userId: number, now: number, requestKey?: string): LocalIssue {
    return this.shardStore.tx(() => this.shardStore.issueLocal(userId, now, requestKey, this.projecting));
  }

  /**
   * Changes the coupon's quantity (shard 0, which holds the quantity's changes; CouponQuantity
   * states the invariants: never below the issued count, D1's check never refuses a win, a
   * stamp per write). Changes are serialised: each reads the quantity the previous one left.
   */
  async setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome> {
    const turn = this.quantityChanges.then(async (): Promise<SetQuantityOutcome> => {
      const loaded = (await this.ensureLoaded(couponId, 0)).result;
      return loaded === "ok" ? this.quantity.change(couponId, quantity) : { ok: false, code: loaded };
    });
    this.quantityChanges = turn.catch(() => undefined);
    return turn;
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
    const c = this.shardStore.coupon()!;
    if (shards === c.shards) return { ok: true, shards };
    if (shards < c.shards || shard >= shards || now >= c.starts_at || c.issued > 0) return { ok: false, code: "COUPON_SHARDS_LOCKED" };
    this.shardStore.tx(() => this.shardStore.setShards(shards));
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
    if (load.result !== "ok") return { ok: false, code: load.result };
    const c = this.shardStore.coupon()!;
    if (this.neverHeld())
      await this.balancer.prefetch({ at: { shard: c.shard, shards: c.shards }, extra: fairShare(c.quantity, c.shards) });
    return { ok: true, shards: c.shards, startsAt: c.starts_at };
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
    return this.balancer.answer(request, { shard, shards: this.shardStore.coupon()!.shards });
  }

  /** Shard 0: a drained sibling hands back units that came back to it (ShardPeer.push). Once per id. */
  async push(couponId: number, shard: number, push: PushRequest): Promise<void> {
    const load = await this.ensureLoaded(couponId, shard);
    if (load.result !== "ok") throw new Error(`coupon shard ${couponId}/${shard} cannot take a push: ${load.result}`);
    this.balancer.accepted(push);
  }

  /** A sibling applied these grants (ShardPeer.acknowledge). Idempotent; a shard that never loaded granted nothing and ignores it. */
  async acknowledge(_couponId: number, _shard: number, transferIds: string[]): Promise<void> {
    if (!this.shardStore.coupon()) return;
    this.balancer.acknowledged(transferIds);
  }

  /**
   * The two numbers a sale page polls (GET /coupons/{id}): one row of the object's storage, never a
   * D1 load (a shard that never loaded issued nothing). Invariant protected: none (no writes).
   */
  async counts(): Promise<IssuerCounts> {
    const coupon = this.shardStore.read();
    return coupon ? { loaded: true, quantity: coupon.quantity, issued: coupon.issued } : { loaded: false, quantity: 0, issued: 0 };
  }

  /** Read-only view of the DO's state. Invariant protected: none (no writes). */
  async state(): Promise<IssuerState> {
    const load = { requests: this.requests, d1Batches: this.projection.batches, d1: this.d1Meter.d1Cost() };
    const coupon = this.shardStore.read();
    if (!coupon)
      return { couponId: null, quantity: 0, issued: 0, users: [], unsynced: 0, shard: 0, shards: 1, held: 0, openTransfers: 0, ...load };
    const { users, unsynced } = this.shardStore.issuances();
    const openTransfers = this.ledger.openTransfers(coupon.shard).length;
    const { quantity, issued, shard, shards, held } = coupon;
    return { couponId: coupon.id, quantity, issued, users, unsynced, shard, shards, held, openTransfers, ...load };
  }

  /**
   * Write-behind safety net. Invariant: D1 converges to exactly the DO's list;
   * every unsynced issuance (and an unsynced quantity) is written again,
   * idempotently, until D1 confirms; transfers a crash left open are re-sent
   * under their ids and owed acknowledgements sent; while anything fails the
   * alarm re-arms itself.
   */
  override async alarm(): Promise<void> {
    this.alarm_.fired();
    const coupon = this.shardStore.reload();
    if (!coupon) return;
    let failed = false;
    if (this.ledger.needsRecovery()) {
      try {
        if (!(await this.balancer.recover(coupon.shard))) failed = true;
      } catch (err) {
        failed = true;
        log("warn", "coupon shard transfer recovery failed", { couponId: coupon.id, shard: coupon.shard, ...errorFields(err) });
      }
    }
    if (this.shardStore.coupon()!.quantity_synced === 0 && !(await this.quantity.write())) failed = true;
    // Issuances a request of this incarnation is writing right now are left to it (it re-arms on failure).
    const resynced = await this.projection.resync({ maxChunks: SYNC_CHUNKS_PER_ALARM, skip: (userId) => this.projecting.has(userId) });
    if (resynced === "failed") failed = true;
    this.shardStore.reload();
    if (failed || this.needsSync()) {
      await this.alarm_.set(Date.now() + (failed ? RETRY_DELAY_MS : resynced === "capped" ? RESYNC_INTERVAL_MS : SYNC_DELAY_MS));
    }
  }

  /** A shard other than 0 that has not taken its share yet (it holds and issued nothing). */
  private neverHeld(): boolean {
    const c = this.shardStore.coupon()!;
    return c.shard > 0 && c.shards > 1 && c.held === 0 && c.issued === 0 && !this.ledger.hasOpen();
  }

  /** The units a sharded shard borrows beyond its need: an eighth of its fair share. */
  private borrowBatch(): number {
    const c = this.shardStore.coupon()!;
    return Math.max(1, Math.ceil(fairShare(c.quantity, c.shards) / 8));
  }

  /** The stubs of this coupon's sibling shards (or the port a test put in). */
  private siblings(): SiblingPort {
    if (this.siblingPort) return this.siblingPort;
    const couponId = this.shardStore.coupon()!.id;
    // A sibling created by this call is placed where the Worker would place it (DO_LOCATION_HINT).
    const ns = placeObjects(this.env.COUPON_ISSUER, loadConfig(this.env).doLocationHint);
    return siblingPortOver(couponId, (shard) => ns.get(ns.idFromName(shardObjectName(couponId, shard))));
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
  private async ensureLoaded(
    couponId: number,
    shard: number,
  ): Promise<{ result: "ok" | "COUPON_NOT_FOUND" | "INTERNAL_ERROR"; d1Calls: number }> {
    let d1Calls = 0;
    // The memory copy is dropped after a rolled-back transaction: a stored coupon row is never loaded again.
    let coupon = this.shardStore.coupon();
    if (!coupon) {
      this.loading ??= this.loader.load(couponId, shard).finally(() => {
        this.loading = undefined;
      });
      const loaded = await this.loading;
      d1Calls = loaded.d1Calls;
      coupon = this.shardStore.reload();
      if (loaded.result === "failed" && !coupon) return { result: "INTERNAL_ERROR", d1Calls };
    }
    return { result: coupon && coupon.id === couponId && coupon.shard === shard ? "ok" : "COUPON_NOT_FOUND", d1Calls };
  }

  /** Leaves no alarm behind once everything is in D1. */
  private async clearAlarmIfSynced(): Promise<void> {
    if (!this.needsSync()) await this.alarm_.clear();
  }

  private needsSync(): boolean {
    if (this.shardStore.coupon()?.quantity_synced === 0) return true;
    if (this.ledger.needsRecovery()) return true;
    return this.shardStore.hasUnsynced();
  }
}
