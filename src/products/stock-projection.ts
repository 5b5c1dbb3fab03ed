import { errorFields, log } from "../shared/logger";

/** One shard's row of `product_stock_shards`: its free units and the stamp that orders its values. */
export interface ShardValue {
  shard: number;
  available: number;
  stamp: number;
}

/**
 * `done`: D1 took the batch; `ahead` lists the shards whose D1 row carries a newer stamp
 * than the value sent (a later write landed first, or the row was moved by hand), with
 * that stamp. `failed`: D1 refused the batch; nothing was written.
 */
export type ProjectionOutcome = { kind: "done"; ahead: Map<number, number> } | { kind: "failed" };

/**
 * Writes shard values of one product to D1 in one batch (one round trip, one write
 * transaction, whatever the number of values): each shard's row of
 * `product_stock_shards`, guarded by its monotonic stamp so a late or retried write
 * never rolls it back, and `products.stock` recomputed as the sum over the product's
 * rows. A product whose shard 0 never projected gets that row from `products.stock`
 * first (the units its unloaded object will load), so the sum never drops them.
 * Idempotent: the same values twice are one write. Shard 0 sends its own value with
 * the ones its siblings handed over (StockProjector); at most 3 + K statements of at
 * most 4 bound parameters each.
 */
export async function projectShards(d1: D1Database, productId: number, values: ShardValue[]): Promise<ProjectionOutcome> {
  const newest = Math.max(...values.map((v) => v.stamp));
  try {
    const results = await d1.batch([
      d1
        .prepare(
          "INSERT OR IGNORE INTO product_stock_shards (product_id, shard, available, stamp) SELECT id, 0, stock, updated_at FROM products WHERE id = ?1",
        )
        .bind(productId),
      ...values.map((v) =>
        d1
          .prepare(
            `INSERT INTO product_stock_shards (product_id, shard, available, stamp) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_id, shard) DO UPDATE SET available = excluded.available, stamp = excluded.stamp
             WHERE excluded.stamp > product_stock_shards.stamp`,
          )
          .bind(productId, v.shard, v.available, v.stamp),
      ),
      d1
        .prepare(
          `UPDATE products SET stock = (SELECT coalesce(sum(available), 0) FROM product_stock_shards WHERE product_id = ?1),
             updated_at = max(updated_at, ?2) WHERE id = ?1`,
        )
        .bind(productId, newest),
      d1.prepare("SELECT shard, stamp FROM product_stock_shards WHERE product_id = ?1").bind(productId),
    ]);
    const stamps = new Map(((results.at(-1)?.results ?? []) as { shard: number; stamp: number }[]).map((r) => [r.shard, r.stamp]));
    const ahead = new Map<number, number>();
    // No row: the product is gone; nothing to project (and nothing to retry).
    for (const v of values) {
      const stamp = stamps.get(v.shard);
      if (stamp !== undefined && stamp > v.stamp) ahead.set(v.shard, stamp);
    }
    return { kind: "done", ahead };
  } catch (err) {
    log("warn", "stock projection write failed; alarm retries", { productId, shards: values.map((v) => v.shard), ...errorFields(err) });
    return { kind: "failed" };
  }
}
