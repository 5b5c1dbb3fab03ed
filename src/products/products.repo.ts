import { asc, count, eq, inArray } from "drizzle-orm";
import type { Db } from "../db/client";
import { products } from "../db/schema";

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
      this.db.select(columns).from(products).orderBy(asc(products.id)).limit(size).offset(page * size),
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

  async create(input: { name: string; description: string; price: number; stock: number }, at: number): Promise<number> {
    const row = await this.db
      .insert(products)
      .values({ ...input, createdAt: at, updatedAt: at })
      .returning({ id: products.id })
      .get();
    return row.id;
  }
}
