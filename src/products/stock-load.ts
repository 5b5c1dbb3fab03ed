import { errorFields, log } from "../shared/logger";
import type { StockShardStore } from "./stock-shard.store";

/**
 * A shard's first load could not read D1 (overloaded, reset, unreachable). Thrown out of the
 * RPC, after blockConcurrencyWhile has returned, so the object is not reset: nothing was
 * decided, nothing is kept, and the next call tries the load again. The Worker sees a failed
 * object call (ObjectUnavailableError) and answers 503 with Retry-After.
 */
export class StockNotLoadedError extends Error {
  constructor(override readonly cause: unknown) {
    super(`stock not loaded: D1 unavailable, retry (${cause instanceof Error ? cause.message : String(cause)})`);
    this.name = "StockNotLoadedError";
  }
}

/**
 * The first load of one ProductStock shard from D1 (docs/ARCHITECTURE.md §9). Owns the one read
 * that decides what a shard starts with and when it counts as loaded.
 */
export class StockLoader {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly store: StockShardStore,
    /** D1 on the primary (read on each use: tests swap the object's field). */
    private readonly d1: () => D1Database,
  ) {}

  /**
   * Loads this shard once: shard 0 takes its row of `product_stock_shards` (or, for a
   * product that has none yet, `products.stock`); a shard i > 0 starts empty. Every
   * shard keeps the product's stock as the size hint of its batches. Then raises the
   * known K to `shards`. blockConcurrencyWhile keeps every other call out while D1
   * is read, so two first calls cannot both initialise. `d1Calls` is 1 when it read D1.
   * A failed read throws StockNotLoadedError (retryable) without resetting the object:
   * the callback never throws, since a throwing callback resets the object and fails every
   * call waiting on it; the next call loads again.
   */
  async ensure(productId: number, shard: number, shards: number): Promise<{ found: boolean; d1Calls: number }> {
    let d1Calls = 0;
    if (!this.store.stock()) {
      let failed: unknown;
      await this.ctx.blockConcurrencyWhile(async () => {
        if (this.store.stock()) return;
        d1Calls = 1;
        let row: { stock: number; shards: number; updatedAt: number; shardAvailable: number | null; shardStamp: number | null } | null;
        try {
          row = await this.d1()
            .prepare(
              `SELECT p.stock AS stock, p.stock_shards AS shards, p.updated_at AS updatedAt, s.available AS shardAvailable, s.stamp AS shardStamp
               FROM products p LEFT JOIN product_stock_shards s ON s.product_id = p.id AND s.shard = ?2 WHERE p.id = ?1`,
            )
            .bind(productId, shard)
            .first();
        } catch (err) {
          // Not thrown from here: a callback of blockConcurrencyWhile that throws resets the object.
          failed = err;
          return;
        }
        if (!row) return;
        const base = { productId, shard, shards: Math.max(shards, row.shards), hint: row.stock };
        if (shard === 0) {
          const stamp = row.shardStamp ?? row.updatedAt;
          this.store.tx(() => this.store.init({ ...base, available: row.shardAvailable ?? row.stock, stamp, projectedStamp: stamp }));
        } else {
          // Dirty on purpose: the first projection writes this shard's row (0) if D1 has none.
          const projectedStamp = row.shardStamp ?? 0;
          this.store.tx(() => this.store.init({ ...base, available: 0, stamp: Math.max(Date.now(), projectedStamp + 1), projectedStamp }));
        }
      });
      if (failed !== undefined) {
        log("warn", "stock shard not loaded: D1 read failed; the next call retries", { productId, shard, ...errorFields(failed) });
        throw new StockNotLoadedError(failed);
      }
    }
    if (!this.store.stock()) return { found: false, d1Calls };
    if (shards > this.store.stock()!.shards) this.store.tx(() => this.store.raiseShards(shards));
    return { found: true, d1Calls };
  }
}
