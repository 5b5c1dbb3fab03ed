import { asc, count, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { products, productStockShards } from "../db/schema";

export interface ProductRow {
  id: number;
  name: string;
  description: string;
  price: number;
  stock: number;
}

const columns = {
  id: products.id,
  name: products.name,
  description: products.description,
  price: products.price,
  stock: products.stock,
};

/** D1 access for the product catalogue (stock here is the DO's projection). */
export class ProductsRepo {
  constructor(private readonly db: Db) {}

  async page(page: number, size: number): Promise<{ rows: ProductRow[]; total: number }> {
    const [rows, totals] = await this.db.batch([
      this.db
        .select(columns)
        .from(products)
        .orderBy(asc(products.id))
        .limit(size)
        .offset(page * size),
      this.db.select({ total: count() }).from(products),
    ]);
    return { rows, total: totals[0]?.total ?? 0 };
  }

  async findById(id: number): Promise<ProductRow | undefined> {
    return this.db.select(columns).from(products).where(eq(products.id, id)).get();
  }

  async findByIds(ids: number[]): Promise<ProductRow[]> {
    if (ids.length === 0) return [];
    return this.db.select(columns).from(products).where(inArray(products.id, ids)).orderBy(asc(products.id)).all();
  }

  /**
   * Creates the product with its stock shard count and, in the same batch, shard 0's
   * projection row holding the whole stock (the other shards' rows appear when they
   * first project), so `products.stock` is the sum over its rows from the start.
   */
  async create(
    input: { name: string; description: string; price: number; stock: number; stockShards?: number },
    at: number,
  ): Promise<number> {
    const [rows] = await this.db.batch([
      this.db
        .insert(products)
        .values({ ...input, createdAt: at, updatedAt: at })
        .returning({ id: products.id }),
      // A batch runs on one connection, in order: last_insert_rowid() is the product just inserted.
      this.db.run(
        sql`INSERT INTO product_stock_shards (product_id, shard, available, stamp) SELECT id, 0, stock, updated_at FROM products WHERE id = last_insert_rowid()`,
      ),
    ]);
    const id = rows[0]?.id;
    if (id === undefined) throw new Error("create product: no id returned");
    return id;
  }

  /** The product's stock shard count and its shards' projected rows (undefined: no such product). */
  async stockShards(productId: number): Promise<{ stockShards: number; rows: { shard: number; available: number }[] } | undefined> {
    const [product, rows] = await this.db.batch([
      this.db.select({ stockShards: products.stockShards }).from(products).where(eq(products.id, productId)),
      this.db
        .select({ shard: productStockShards.shard, available: productStockShards.available })
        .from(productStockShards)
        .where(eq(productStockShards.productId, productId))
        .orderBy(asc(productStockShards.shard)),
    ]);
    return product[0] ? { stockShards: product[0].stockShards, rows } : undefined;
  }

  /**
   * Raises the stock shard count to `stockShards`, never lowering it (one conditional
   * write, so two racing raises cannot lower each other). Returns the count after the
   * write (higher than asked: it was already higher, nothing changed), undefined for
   * an unknown product.
   */
  async raiseStockShards(productId: number, stockShards: number): Promise<number | undefined> {
    const row = await this.db
      .update(products)
      .set({ stockShards: sql`max(${products.stockShards}, ${stockShards})` })
      .where(eq(products.id, productId))
      .returning({ stockShards: products.stockShards })
      .get();
    return row?.stockShards;
  }
}
