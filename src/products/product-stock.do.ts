import { DurableObject } from "cloudflare:workers";
import { loadConfig } from "../config";
import { errorFields, log } from "../shared/logger";
import { placeObjects } from "../shared/object-placement";
import { primaryD1 } from "../db/client";
import { HopMeter, meterD1 } from "../shared/hops";
import { ObjectAlarm } from "../shared/object-alarm";
import { shardObjectName, UNSHARDED } from "../sharding/routing";
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
import { SiblingProjections } from "./sibling-projections";
import type { ShardValue } from "./stock-projection";
import { StockProjector } from "./stock-projector";
import { SHORT, StockShardStore } from "./stock-shard.store";
import { StockLoader } from "./stock-load";
import type {
  ConfirmResult,
  NestedCalls,
  PrimeResult,
  ReleaseResult,
  ReserveRequest,
  ReserveResult,
  RestockResult,
  SellResult,
  SettleManyResult,
  StockShardState,
  StockSnapshot,
} from "./product-stock.types";

export type * from "./product-stock.types";
export { FINISHED_RETENTION_MS, HOLD_TTL_MS } from "./stock-shard.store";
export { StockNotLoadedError } from "./stock-load";
export { PROJECTION_INTERVAL_MS, PROJECTION_LAG_MS } from "./stock-projector";
/** The alarm armed before a transfer is sent fires this long after (the round normally finishes first). */
const RECOVERY_DELAY_MS = 2_000;
/** Retry interval of recovery work left over (an open transfer, an acknowledgement not delivered). */
const RECOVERY_RETRY_MS = 1_000;
/** Borrowing rounds one reservation may start before it answers SHARDS_BUSY (each borrow runs up to MAX_BORROW_ROUNDS). */
const RESERVE_BORROWS = 2;

const withNested = <T extends object>(r: T, n: NestedCalls): T & { nested?: NestedCalls } =>
  n.do > 0 || n.d1 > 0 ? { ...r, nested: n } : r;

/**
 * One shard of a product's stock (docs/ARCHITECTURE.md §3, §9), named
 * `idFromName(shardObjectName(productId, shard))`: shard 0 is the object named
 * `String(productId)`, so a product with one shard (K = 1) is the one object of
 * before. Each shard is the source of truth for the units it holds and for the
 * reservations of the orders routed to it (`orderShard(orderId, K)`); every
 * decision is read-check-write inside one `transactionSync` (StockShardStore),
 * with no await in between, so concurrent callers can never both take the last
 * unit. A reservation lives held -> confirmed -> sold, or -> released; every
 * transition is keyed by the order id and idempotent.
 *
 * Shard 0 loads the product's stock from D1 on first use; shards i > 0 start
 * empty and borrow from their siblings (ShardBalancer: persisted transfers,
 * exactly-once grants, a dryness proof before "out of stock"). Each shard's value
 * is projected into its `product_stock_shards` row behind the answer, with
 * `products.stock` recomputed as their sum in the same D1 batch; shard 0 writes
 * those batches for the whole product at a bounded pace (StockProjector).
 * Business outcomes are returned as discriminated unions, never thrown.
 */
export class ProductStock extends DurableObject<Env> implements ShardPeer {
  /** What this incarnation cost D1 (calls, rows, write transactions): its admin view shows it. */
  private readonly d1Meter = new HopMeter();
  /**
   * D1 on the primary (src/db/client.ts primaryD1): the first load must read the latest stock
   * (a replica could hand back an old value and re-create sold units), and the projection
   * writes check their own stamps. Metered, so the object's own D1 cost is visible.
   */
  private readonly d1 = meterD1(primaryD1(this.env.DB), this.d1Meter);
  private readonly store: StockShardStore;
  private readonly loader: StockLoader;
  private readonly ledger: ShardLedger;
  private readonly balancer: ShardBalancer;
  private readonly siblingValues: SiblingProjections;
  private readonly projector: StockProjector;
  /** How this shard reaches its siblings. A field so tests can cut a transfer off half-way. */
  siblingPort: SiblingPort | undefined;
  /** The clock that paces the D1 projection. A field so tests can run a storm in simulated time. */
  clock: () => number = Date.now;
  /** The object's alarm (projection steps, hold timeouts, transfer recovery). */
  private readonly alarm_: ObjectAlarm;
  /** Borrowing rounds this incarnation is running: the alarm leaves their transfers to them. */
  private borrowing = 0;
  /** `reserve` calls this incarnation answered (not persisted: a load indicator, like the coupon shards'). */
  private requests = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new StockShardStore(ctx.storage);
    this.alarm_ = new ObjectAlarm(ctx.storage);
    // The D1 handle is read on each load (tests swap the object's `d1`).
    this.loader = new StockLoader(ctx, this.store, () => this.d1);
    this.ledger = new ShardLedger(ctx.storage.sql, this.store);
    this.siblingValues = new SiblingProjections(ctx.storage.sql);
    this.store.onRollback = () => {
      this.ledger.invalidate();
      this.siblingValues.invalidate();
    };
    this.projector = new StockProjector(
      {
        store: this.store,
        d1: () => this.d1,
        now: () => this.clock(),
        handOver: async (value) => {
          await this.shardStub(0).acceptProjection(this.store.stock()!.product_id, value);
        },
        flushSibling: async (shard) => {
          await this.shardStub(shard).flush();
        },
      },
      this.siblingValues,
    );
    this.balancer = new ShardBalancer(
      {
        available: () => this.store.available(),
        adjust: (delta) => this.store.adjust(delta),
        tx: (body) => this.store.tx(body),
        armRecovery: () => this.armRecovery(),
      },
      this.ledger,
      () => this.siblings(),
    );
    void ctx.blockConcurrencyWhile(async () => {
      this.store.createSchema();
      this.ledger.createSchema();
      this.siblingValues.createSchema();
      await this.alarm_.load();
    });
  }

  /**
   * Takes `quantity` for `orderId`: as a held reservation that times out after
   * HOLD_TTL_MS, or, with `confirmed`, as a confirmed one in the same call (order
   * placement does this: its PENDING order row exists before the call, and the
   * stale-placement cron releases what a dead placement took). `at` says which
   * shard this is and the product's K (raised here, never lowered).
   * Invariant: available never goes below 0; one order holds at most one
   * reservation per product (a repeat returns the existing one, confirming a hold
   * if asked; an order already released cannot be resurrected by a late retry);
   * INSUFFICIENT_STOCK only when this shard is the only one or the siblings were
   * proved empty, SHARDS_BUSY when neither could be settled.
   */
  async reserve({ productId, orderId, quantity, now, confirmed = false, at = UNSHARDED }: ReserveRequest): Promise<ReserveResult> {
    this.requests++;
    if (!Number.isSafeInteger(quantity) || quantity <= 0) return { ok: false, code: "INVALID_QUANTITY", available: 0 };
    const loaded = await this.ensureStock(productId, at.shard, at.shards);
    const nested: NestedCalls = { do: 0, d1: loaded.d1Calls };
    if (!loaded.found) return withNested({ ok: false, code: "PRODUCT_NOT_FOUND", available: 0 }, nested);
    let result: ReserveResult | undefined;
    for (let borrows = 0; !result; borrows++) {
      const local = this.store.tx(() => this.store.reserveLocal(orderId, quantity, now, confirmed));
      if (local !== SHORT) result = local;
      else if (borrows === RESERVE_BORROWS) result = { ok: false, code: "SHARDS_BUSY", available: this.store.available() };
      else {
        // The reservation is made the moment the units are seen free (no other borrower can take them in between).
        const outcome = await this.borrow(quantity, undefined, () =>
          this.store.tx(() => this.store.reserveLocal(orderId, quantity, now, confirmed)),
        );
        nested.do += outcome.rounds;
        if (outcome.result === "dry") result = { ok: false, code: "INSUFFICIENT_STOCK", available: this.store.available() };
        if (outcome.result === "unknown") result = { ok: false, code: "SHARDS_BUSY", available: this.store.available() };
        if (outcome.result === "covered" && outcome.taken !== undefined && outcome.taken !== SHORT) result = outcome.taken;
      }
    }
    if (result.ok || nested.do > 0) await this.afterChange();
    return withNested(result, nested);
  }

  /**
   * held -> confirmed, once the order exists for good. Invariant: a hold that
   * timed out is never confirmed (it is released here if the alarm has not run
   * yet), so stock cannot be counted both as available and as reserved.
   */
  async confirm(orderId: number): Promise<ConfirmResult> {
    const result = this.store.tx(() => this.store.confirmRow(orderId, Date.now()));
    if (!result.ok && result.code === "HOLD_EXPIRED") await this.unitsReturned();
    await this.afterChange();
    return result;
  }

  /**
   * confirmed (or a live hold) -> sold, after the payment committed in D1.
   * Invariant: sold units never return to available; a released reservation
   * is not sold (that would count the units twice), it is reported instead.
   */
  async sell(orderId: number): Promise<SellResult> {
    return this.settle(() => this.store.settleRows([orderId], [], Date.now()).sold[0]!);
  }

  /**
   * held|confirmed -> released, giving the units back to this shard (failure,
   * expiry, cancel). Invariant: units are given back at most once per order; a
   * sold reservation is never released. Releasing an unknown order leaves a
   * tombstone so a reserve that arrives late cannot take stock for it.
   */
  async release(orderId: number): Promise<ReleaseResult> {
    return this.settle(() => this.store.settleRows([], [orderId], Date.now()).released[0]!);
  }

  /**
   * The crons' batched settlement: every id in `sellIds` is sold and every id in
   * `releaseIds` released, with exactly the rules of `sell` and `release`, in one
   * transaction and one round trip (so a sweep costs one call per product shard,
   * not per order line). Invariant: the same as theirs; an order that cannot take
   * its transition is reported in `refused` and left as it is, never forced.
   */
  async settleMany(sellIds: number[], releaseIds: number[]): Promise<SettleManyResult> {
    return this.settle(() => {
      const { sold, released } = this.store.settleRows(sellIds, releaseIds, Date.now());
      const refused: SettleManyResult["refused"] = [];
      sold.forEach((r, i) => {
        if (!r.ok) refused.push({ orderId: sellIds[i]!, code: r.code });
      });
      released.forEach((r, i) => {
        if (!r.ok) refused.push({ orderId: releaseIds[i]!, code: r.code });
      });
      return { refused };
    });
  }

  /**
   * Admin restock (delta > 0) or reduction (delta < 0), sent to shard 0.
   * Invariant: available never goes below 0; reserved units are not touched. A
   * reduction larger than this shard holds borrows the rest from the siblings first.
   */
  async restock(productId: number, delta: number): Promise<RestockResult> {
    if (!Number.isSafeInteger(delta) || delta === 0) return { ok: false, code: "INVALID_QUANTITY", available: 0 };
    if (!(await this.ensureStock(productId, 0, 1)).found) return { ok: false, code: "PRODUCT_NOT_FOUND", available: 0 };
    const stock = this.store.stock()!;
    if (delta < 0 && stock.available + delta < 0 && stock.shards > 1) await this.borrow(-delta, 0);
    const result = this.store.tx((): RestockResult => {
      const available = this.store.available();
      if (available + delta < 0) return { ok: false, code: "INSUFFICIENT_STOCK", available };
      return { ok: true, available: this.store.change(delta) };
    });
    await this.afterChange();
    // An admin change is rare: project it before answering, so the catalogue shows it right away.
    if (result.ok) await this.flush();
    return result;
  }

  /**
   * Loads this shard ahead of its first order and learns the product's K; with
   * `prefetch`, a shard i > 0 that holds nothing takes a batch of about its fair
   * share from its siblings (a new product's stock starts split). Projected before
   * answering. Invariant: the same as borrowing's (a transfer moves units, never makes them).
   */
  async prime(productId: number, shard: number, shards: number, prefetch: boolean): Promise<PrimeResult | undefined> {
    if (!(await this.ensureStock(productId, shard, shards)).found) return undefined;
    const stock = this.store.stock()!;
    if (prefetch && stock.shard > 0 && stock.shards > 1 && stock.available === 0) {
      this.borrowing++;
      try {
        await this.balancer.prefetch({ at: { shard: stock.shard, shards: stock.shards }, extra: fairShare(stock.hint, stock.shards) });
      } finally {
        this.borrowing--;
      }
    }
    await this.afterChange();
    await this.flush();
    const after = this.store.stock()!;
    return { shard: after.shard, shards: after.shards, available: after.available };
  }

  /** Read-only view for invariant checks, diagnostics and the admin shard view. */
  async snapshot(productId: number, shard = 0): Promise<StockSnapshot | undefined> {
    if (!(await this.ensureStock(productId, shard, 1)).found) return undefined;
    const stock = this.store.stock()!;
    return { productId: stock.product_id, available: stock.available, ...this.store.sums() };
  }

  /**
   * The snapshot plus this shard's load indicators and its open transfers, for the
   * admin shard view. Read-only; the counters live in memory and restart at 0 when
   * the object does. Invariant protected: none (no writes).
   */
  async state(productId: number, shard = 0): Promise<StockShardState | undefined> {
    const snap = await this.snapshot(productId, shard);
    if (!snap) return undefined;
    return {
      ...snap,
      openTransfers: this.ledger.openTransfers(shard).length,
      requests: this.requests,
      d1Batches: this.projector.batches,
      d1: this.d1Meter.d1Cost(),
    };
  }

  /**
   * A sibling asks for units (ShardPeer.give): granted at most once per transfer id,
   * in one transaction with the units taken; a repeat answers the recorded grant.
   * Invariant: a grant never exceeds what this shard holds free. A product that does not
   * exist answers NOTHING_TO_GIVE; a first load D1 cannot serve throws (the asker re-sends).
   */
  async give(productId: number, shard: number, request: GiveRequest): Promise<GiveAnswer> {
    if (!(await this.ensureStock(productId, shard, request.receiver + 1)).found) return NOTHING_TO_GIVE;
    const answer = await this.balancer.answer(request, { shard, shards: this.store.stock()!.shards });
    if (answer.granted > 0) await this.afterChange();
    return answer;
  }

  /** Shard 0: a drained sibling hands back units that came back to it (ShardPeer.push). Once per id. */
  async push(productId: number, shard: number, push: PushRequest): Promise<void> {
    if (!(await this.ensureStock(productId, shard, push.sender + 1)).found)
      throw new Error(`stock shard ${shard} of ${productId} not found`);
    this.balancer.accepted(push);
    await this.afterChange();
  }

  /**
   * A sibling applied these grants (ShardPeer.acknowledge): they are no longer units possibly in
   * flight. Idempotent; a shard that never loaded granted nothing and ignores it.
   */
  async acknowledge(_productId: number, _shard: number, transferIds: string[]): Promise<void> {
    if (!this.store.stock()) return;
    this.balancer.acknowledged(transferIds);
  }

  /**
   * Shard 0 takes a sibling's value for the product's next D1 projection batch (a
   * sibling never writes behind itself: K writers would cost D1 K times the write
   * transactions; StockProjector). Invariant: the newest value per sibling wins (by
   * stamp), and it is persisted, with the alarm that writes it, before the answer, so
   * the sibling may stop caring about it.
   */
  async acceptProjection(productId: number, value: ShardValue): Promise<void> {
    if (!(await this.ensureStock(productId, 0, value.shard + 1)).found) return;
    this.store.tx(() => this.projector.accept(value));
    await this.afterChange();
  }

  /**
   * Releases holds that timed out (crash safety: a saga that died between reserve
   * and confirm cannot strand stock), finishes transfers a crash left open (re-sent
   * under their ids, so each grant is applied once) and acknowledgements owed, and
   * takes the projection's paced step (shard 0 writes the product's batch, a sibling
   * hands its value to shard 0). Stays armed while any of that work is left.
   */
  override async alarm(): Promise<void> {
    this.alarm_.fired();
    const stock = this.store.stock();
    if (!stock) return;
    // Units of expired holds are back here: a drained shard tells shard 0 (left owed if it cannot: retried below).
    if (this.store.tx(() => this.store.releaseExpiredHolds(Date.now())) > 0) await this.unitsReturned().catch(() => undefined);
    if (stock.shards > 1 && this.borrowing === 0 && this.balancer.needsRecovery()) {
      try {
        await this.balancer.recover(stock.shard);
      } catch (err) {
        log("warn", "stock shard recovery failed; the alarm retries", {
          productId: stock.product_id,
          shard: stock.shard,
          ...errorFields(err),
        });
      }
    }
    await this.projector.runBehind();
    await this.afterChange();
  }

  /**
   * Writes the projection now, unpaced (admin calls, tests): true when D1 holds this
   * shard's current value (shard 0: and every sibling value it was handed). Coalesced:
   * one D1 write in flight per object. Invariant protected: none beyond the
   * projection's (stamp-guarded, idempotent).
   */
  async flush(): Promise<boolean> {
    return this.projector.flush();
  }

  /**
   * One transaction of sell/release transitions, then the alarm. Units given back at a drained
   * shard are pushed to shard 0 before the call answers (docs/SHARDING.md: a return completes
   * once shard 0 knows); if shard 0 cannot be told the call fails and its retry (the cron's, the
   * caller's) sends the word still owed.
   */
  private async settle<T>(body: () => T): Promise<T> {
    const before = this.store.available();
    const result = this.store.tx(body);
    await this.afterChange();
    if (this.store.available() > before || this.ledger.needsRecovery()) await this.unitsReturned();
    return result;
  }

  /** Units came back to this shard locally (ShardBalancer.returned). */
  private async unitsReturned(): Promise<void> {
    const stock = this.store.stock();
    if (stock && stock.shards > 1) await this.balancer.returned(stock.shard);
  }

  /** Borrows until this shard holds `need` (ShardBalancer.borrow), with a batch of about one fair share in all. */
  private async borrow<T = never>(need: number, extra?: number, take?: () => T) {
    const stock = this.store.stock()!;
    const batch = extra ?? Math.ceil(fairShare(stock.hint, stock.shards) / Math.max(1, stock.shards - 1));
    this.borrowing++;
    try {
      return await this.balancer.borrow({ at: { shard: stock.shard, shards: stock.shards }, need, extra: batch, take });
    } finally {
      this.borrowing--;
    }
  }

  /** The RPC stub of shard `shard` of this product (known once loaded). */
  private shardStub(shard: number): DurableObjectStub<ProductStock> {
    // A sibling created by this call is placed where the Worker would place it (DO_LOCATION_HINT).
    const ns = placeObjects(this.env.PRODUCT_STOCK, loadConfig(this.env).doLocationHint);
    return ns.get(ns.idFromName(shardObjectName(this.store.stock()!.product_id, shard))) as DurableObjectStub<ProductStock>;
  }

  /** The RPC stubs of this product's other shards (built once the product is known). */
  private siblings(): SiblingPort {
    this.siblingPort ??= siblingPortOver(this.store.stock()!.product_id, (s) => this.shardStub(s));
    return this.siblingPort;
  }

  /** Loads this shard once and raises its K to `shards` (StockLoader.ensure). */
  private ensureStock(productId: number, shard: number, shards: number): Promise<{ found: boolean; d1Calls: number }> {
    return this.loader.ensure(productId, shard, shards);
  }

  /** Arms the alarm before a transfer is sent, so a crash mid-transfer is finished by `alarm`. */
  private async armRecovery(): Promise<void> {
    await this.alarm_.armBy(Date.now() + RECOVERY_DELAY_MS);
  }

  /**
   * Arms the alarm for whatever is due: the projection's next paced step
   * (StockProjector.dueAt), the next hold timeout, and recovery work left. Invariant:
   * a change is never answered before the alarm that projects it is stored, so a
   * crash or eviction right after the answer still brings D1 up to date. No D1 call
   * is awaited here: a stock change costs its caller one round trip (docs/ARCHITECTURE.md §8).
   */
  private async afterChange(): Promise<void> {
    const stock = this.store.stock();
    if (!stock) return;
    let at = this.store.nextHoldExpiry();
    const projectAt = this.projector.dueAt();
    if (projectAt !== null) at = Math.min(at ?? Infinity, projectAt);
    if (stock.shards > 1 && this.balancer.needsRecovery()) at = Math.min(at ?? Infinity, Date.now() + RECOVERY_RETRY_MS);
    if (at === null) await this.alarm_.clear();
    else await this.alarm_.armBy(at);
  }
}
