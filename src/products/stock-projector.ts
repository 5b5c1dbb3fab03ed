import { errorFields, log } from "../shared/logger";
import type { SiblingProjections } from "./sibling-projections";
import { projectShards, type ShardValue } from "./stock-projection";
import type { StockShardStore } from "./stock-shard.store";

/**
 * Shard 0 writes its product's projection batch at most once per this, so a hot product
 * costs D1 at most two write transactions a second on the write-behind path, whatever
 * its K (explicit flushes by admin calls come on top; they are rare).
 */
export const PROJECTION_INTERVAL_MS = 500;
/** A shard i > 0 hands its value to shard 0 at most once per this (one small object call, no D1). */
export const HANDOVER_INTERVAL_MS = 250;
/** After a change the write-behind waits at least this long, so changes close together share one write. */
export const PROJECTION_DELAY_MS = 50;
/** The next try after D1 (or shard 0) refused a write or a hand-over. */
export const PROJECTION_RETRY_MS = 500;
/**
 * The longest the D1 projection trails a shard once changes stop, when D1 and shard 0
 * answer: a hand-over within HANDOVER_INTERVAL_MS, then shard 0's batch within
 * PROJECTION_INTERVAL_MS of its previous one (plus the calls' own time).
 */
export const PROJECTION_LAG_MS = HANDOVER_INTERVAL_MS + PROJECTION_INTERVAL_MS;

/** What the projector needs from its ProductStock shard. */
export interface ProjectorHost {
  /** The shard's persisted row: identity, free units, stamps. */
  readonly store: Pick<StockShardStore, "stock" | "isDirty" | "markProjected" | "stampPast" | "tx">;
  /** D1 through the object's primary session. */
  d1(): D1Database;
  /** The clock of the pace (the object's; a test seam). */
  now(): number;
  /** Shard 0's `acceptProjection` (a sibling's hand-over); resolves once shard 0 has persisted the value. */
  handOver(value: ShardValue): Promise<void>;
  /** Shard `shard` writes its own row now (its `flush`). */
  flushSibling(shard: number): Promise<void>;
}

/**
 * Owns the write-behind projection of one ProductStock shard into D1
 * (`product_stock_shards`, `products.stock`): when it is written, by whom, at what pace.
 *
 * Why shard 0 writes for all (and not each shard on a slower clock): K independent
 * writers at rate r cost D1 K·r write transactions a second, so a bound of two a second
 * would give each shard one write every K/2 s, and after a storm a shard's last change
 * could wait K/2 s (4 s at K = 8) to reach D1. Instead a shard i > 0 hands its value
 * to shard 0 (an object call, persisted there before the answer), and shard 0 writes
 * every value it holds, its own included, in one batch at most every
 * PROJECTION_INTERVAL_MS. D1 then sees at most two write transactions a second per
 * product for any K, and trails the objects by at most about PROJECTION_LAG_MS. The
 * rows still move together: each batch recomputes `products.stock` from the rows.
 *
 * An explicit `flush` (admin calls, tests) writes at once, unpaced: a sibling writes its
 * own row itself, shard 0 writes its own with every value it holds, so D1 is exact when
 * an admin call that flushes every shard answers. Stamps order every write, so the two
 * paths can interleave in any order without rolling a row back.
 */
export class StockProjector {
  /** D1 projection batches this incarnation sent (retries included): a load indicator for the admin view. */
  batches = 0;
  /** When the last paced step (shard 0: a batch D1 took; a sibling: a hand-over) succeeded. */
  private lastDoneAt = -Infinity;
  private lastFailedAt = -Infinity;
  /** A sibling's newest stamp shard 0 holds (memory only: after a restart a value is handed over again, harmlessly). */
  private handedStamp = 0;
  private writing: Promise<boolean> | undefined;
  private handing: Promise<boolean> | undefined;

  constructor(
    private readonly host: ProjectorHost,
    private readonly siblings: SiblingProjections,
  ) {}

  /** Whether the write-behind has work: shard 0 a value D1 lacks (its own or a sibling's), a sibling a value shard 0 lacks. */
  pending(): boolean {
    const stock = this.host.store.stock();
    if (!stock) return false;
    if (stock.shard === 0) return this.host.store.isDirty() || this.siblings.hasPending();
    return this.host.store.isDirty() && stock.stamp > this.handedStamp;
  }

  /** When the alarm must run `runBehind` (paced, and backing off after a failure), or null when nothing is pending. */
  dueAt(): number | null {
    if (!this.pending()) return null;
    return Math.max(this.host.now() + PROJECTION_DELAY_MS, this.lastDoneAt + this.interval(), this.lastFailedAt + PROJECTION_RETRY_MS);
  }

  /**
   * The alarm's step: shard 0 writes one batch, a sibling hands its value over. Paced
   * by the last success, not by the alarm: an alarm that fires early for another reason
   * (a hold timeout, transfer recovery) does not write ahead of time.
   */
  async runBehind(): Promise<void> {
    if (!this.pending() || this.host.now() < this.lastDoneAt + this.interval()) return;
    if (this.host.store.stock()!.shard === 0) await this.write();
    else await this.handOver();
  }

  /**
   * Writes now, unpaced: true once D1 holds this shard's current value (shard 0: and
   * every sibling value it holds). Coalesced: one D1 write in flight per object.
   */
  async flush(): Promise<boolean> {
    for (let round = 0; round < 3 && this.unwritten(); round++) {
      if (!(await this.write())) return false;
    }
    return !this.unwritten();
  }

  /** Shard 0 takes a sibling's value for its next batch (the caller persists it in its transaction). */
  accept(value: ShardValue): void {
    this.siblings.note(value);
  }

  private interval(): number {
    return this.host.store.stock()?.shard === 0 ? PROJECTION_INTERVAL_MS : HANDOVER_INTERVAL_MS;
  }

  /** Whether D1 lacks a value this shard is responsible for writing on `flush`. */
  private unwritten(): boolean {
    const stock = this.host.store.stock();
    if (!stock) return false;
    return this.host.store.isDirty() || (stock.shard === 0 && this.siblings.hasPending());
  }

  private write(): Promise<boolean> {
    this.writing ??= this.writeBatch().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  /** One batch: this shard's value if D1 lacks it, and on shard 0 every sibling value it holds. True when D1 took it. */
  private async writeBatch(): Promise<boolean> {
    const { store } = this.host;
    const stock = store.stock()!;
    const own: ShardValue[] = store.isDirty() ? [{ shard: stock.shard, available: stock.available, stamp: stock.stamp }] : [];
    const others = stock.shard === 0 ? this.siblings.pending() : [];
    if (own.length + others.length === 0) return true;
    this.batches++;
    const out = await projectShards(this.host.d1(), stock.product_id, [...own, ...others]);
    if (out.kind === "failed") {
      this.lastFailedAt = this.host.now();
      return false;
    }
    this.lastDoneAt = this.host.now();
    store.tx(() => {
      for (const v of own) {
        const ahead = out.ahead.get(v.shard);
        // D1's row is newer than ours (moved by hand): step past it so the next write lands.
        if (ahead !== undefined) store.stampPast(ahead);
        else store.markProjected(v.stamp);
      }
      this.siblings.written(others);
    });
    // A sibling's row ahead of the value held for it: the sibling wrote a newer one itself (nothing to do),
    // or the row was moved by hand, which only the sibling can step past. Rare: ask it to write its own.
    const behind = others.filter((v) => out.ahead.has(v.shard));
    await Promise.allSettled(behind.map((v) => this.host.flushSibling(v.shard)));
    return true;
  }

  private handOver(): Promise<boolean> {
    this.handing ??= this.handOverOnce().finally(() => {
      this.handing = undefined;
    });
    return this.handing;
  }

  /** A sibling's paced step: its current value to shard 0, which writes it with the product's next batch. */
  private async handOverOnce(): Promise<boolean> {
    const stock = this.host.store.stock()!;
    const value = { shard: stock.shard, available: stock.available, stamp: stock.stamp };
    try {
      await this.host.handOver(value);
    } catch (err) {
      this.lastFailedAt = this.host.now();
      log("warn", "stock projection hand-over to shard 0 failed; alarm retries", {
        productId: stock.product_id,
        shard: stock.shard,
        ...errorFields(err),
      });
      return false;
    }
    this.handedStamp = Math.max(this.handedStamp, value.stamp);
    this.lastDoneAt = this.host.now();
    return true;
  }
}
