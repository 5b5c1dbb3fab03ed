import { errorFields, log } from "../shared/logger";

/** What a shard projects: its row of `product_stock_shards`. */
export interface ShardValue {
  productId: number;
  shard: number;
  available: number;
  stamp: number;
}

/** `written`: D1 holds the value; `ahead`: D1's row has a newer stamp (moved by hand); `failed`: D1 refused. */
export type ProjectionOutcome = { kind: "written" } | { kind: "ahead"; stamp: number } | { kind: "failed" };

/**
 * Writes one shard's value to D1 in one batch (one round trip, one transaction):
 * the shard's row of `product_stock_shards`, guarded by its monotonic stamp so a
 * late or retried write never rolls it back, and `products.stock` recomputed as
 * the sum over the product's rows. A product whose shard 0 never projected gets
 * that row from `products.stock` first (the units its unloaded object will load),
 * so the sum never drops them. Idempotent: the same value twice is one write.
 */
export async function projectShard(d1: D1Database, v: ShardValue): Promise<ProjectionOutcome> {
  try {
    const results = await d1.batch([
      d1
        .prepare("INSERT OR IGNORE INTO product_stock_shards (product_id, shard, available, stamp) SELECT id, 0, stock, updated_at FROM products WHERE id = ?1")
        .bind(v.productId),
      d1
        .prepare(
          `INSERT INTO product_stock_shards (product_id, shard, available, stamp) VALUES (?1, ?2, ?3, ?4)
           ON CONFLICT (product_id, shard) DO UPDATE SET available = excluded.available, stamp = excluded.stamp
           WHERE excluded.stamp > product_stock_shards.stamp`,
        )
        .bind(v.productId, v.shard, v.available, v.stamp),
      d1
        .prepare(
          `UPDATE products SET stock = (SELECT coalesce(sum(available), 0) FROM product_stock_shards WHERE product_id = ?1),
             updated_at = max(updated_at, ?2) WHERE id = ?1`,
        )
        .bind(v.productId, v.stamp),
      d1.prepare("SELECT stamp FROM product_stock_shards WHERE product_id = ?1 AND shard = ?2").bind(v.productId, v.shard),
    ]);
    const stamp = (results[3]?.results[0] as { stamp: number } | undefined)?.stamp;
    // No row: the product is gone; nothing to project (and nothing to retry).
    if (stamp === undefined || stamp <= v.stamp) return { kind: "written" };
    return { kind: "ahead", stamp };
  } catch (err) {
    log("warn", "stock projection write failed; alarm retries", { productId: v.productId, shard: v.shard, ...errorFields(err) });
    return { kind: "failed" };
  }
}
