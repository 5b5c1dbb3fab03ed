import type { D1Cost } from "../shared/hops";
import { AppError } from "../shared/errors";
import { errorFields, log } from "../shared/logger";
import type { StockPort } from "./product-stock.client";
import type { ProductsRepo } from "./products.repo";

const NO_D1_COST: D1Cost = { calls: 0, rowsRead: 0, rowsWritten: 0, writeTx: 0 };

export interface ShardView {
  shard: number;
  available: number;
  held: number;
  confirmed: number;
  sold: number;
  /** The shard's row in D1 (`product_stock_shards`), written behind the object; null before its first write. */
  projected: number | null;
  /** Transfers the shard asked its siblings for and has not closed: while any is open, units may be in flight. */
  openTransfers: number;
  /** `reserve` calls the shard's current incarnation answered (a load indicator; 0 again after a restart). */
  requests: number;
  /** D1 projection batches the shard's current incarnation sent (a load indicator; 0 again after a restart). */
  d1Batches: number;
  /** The shard's own D1 calls, rows read and written and write transactions (its current incarnation). */
  d1: D1Cost;
}

export interface StockShardsView {
  productId: number;
  stockShards: number;
  shards: ShardView[];
  total: Pick<ShardView, "available" | "held" | "confirmed" | "sold">;
}

/**
 * The admin side of sharded stock (docs/ARCHITECTURE.md §9): new products are primed on every
 * shard, the shard count is only ever raised, and the shards can be looked at.
 * K is read from D1 by placement (`products.stock_shards`) and told to the shard
 * on each reservation, so a raise is in effect for the next order.
 */
export class StockShardsService {
  constructor(
    private readonly products: ProductsRepo,
    private readonly stock: StockPort,
    private readonly clock: () => number,
  ) {}

  /**
   * Creates a product (its D1 row and shard 0's projected row) and primes every stock shard, so no
   * order waits for that load (shards i > 0 take their share; best effort).
   */
  async createProduct(input: { name: string; description: string; price: number; stock: number; stockShards: number }): Promise<number> {
    const productId = await this.products.create(input, this.clock());
    await this.primeNewProduct(productId, input.stockShards);
    return productId;
  }

  /** Admin restock (delta > 0) or reduction (delta < 0) through the product's shard 0; never below 0. */
  async restock(productId: number, delta: number): Promise<{ productId: number; stock: number }> {
    const result = await this.stock.restock(productId, delta);
    if (!result.ok) throw new AppError(result.code);
    return { productId, stock: result.available };
  }

  /**
   * Loads every shard of a new product so no order waits for that D1 read; shards
   * i > 0 take their fair share from shard 0, so the stock starts split. Best
   * effort: a shard that is not primed loads and borrows on its first order.
   */
  async primeNewProduct(productId: number, stockShards: number): Promise<void> {
    await this.stock
      .prime(productId, stockShards, true)
      .catch((err: unknown) => log("warn", "stock shards not primed", { productId, ...errorFields(err) }));
  }

  /**
   * Raises the product's shard count. Never lowers it: a shard left out would
   * strand the reservations routed to it (409 STOCK_SHARDS_CANNOT_DECREASE).
   * New shards start empty and borrow on their first orders; every shard is told
   * the new K at once (one parallel step), so the old ones can borrow from them.
   */
  async raise(productId: number, stockShards: number): Promise<{ productId: number; stockShards: number }> {
    const after = await this.products.raiseStockShards(productId, stockShards);
    if (after === undefined) throw new AppError("PRODUCT_NOT_FOUND");
    if (after > stockShards) {
      throw new AppError("STOCK_SHARDS_CANNOT_DECREASE", `재고 샤드 수는 줄일 수 없습니다. (현재 ${after}, 요청 ${stockShards})`);
    }
    await this.stock.prime(productId, after, false);
    return { productId, stockShards: after };
  }

  /** Each shard's own books (its snapshot) and load indicators beside its projected D1 row, and the sum of the books. */
  async view(productId: number): Promise<StockShardsView> {
    const known = await this.products.stockShards(productId);
    if (!known) throw new AppError("PRODUCT_NOT_FOUND");
    const snapshots = await Promise.all(Array.from({ length: known.stockShards }, (_, s) => this.stock.state(productId, s)));
    const projected = new Map(known.rows.map((r) => [r.shard, r.available]));
    const total = { available: 0, held: 0, confirmed: 0, sold: 0 };
    const shards = snapshots.map((snap, shard) => {
      const v = { available: snap?.available ?? 0, held: snap?.held ?? 0, confirmed: snap?.confirmed ?? 0, sold: snap?.sold ?? 0 };
      for (const k of ["available", "held", "confirmed", "sold"] as const) total[k] += v[k];
      const load = {
        openTransfers: snap?.openTransfers ?? 0,
        requests: snap?.requests ?? 0,
        d1Batches: snap?.d1Batches ?? 0,
        d1: snap?.d1 ?? NO_D1_COST,
      };
      return { shard, ...v, projected: projected.get(shard) ?? null, ...load };
    });
    return { productId, stockShards: known.stockShards, shards, total };
  }
}
