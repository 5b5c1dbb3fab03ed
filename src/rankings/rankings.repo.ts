/** A product's paid quantity in a window. */
export interface SalesRow {
  productId: number;
  sales: number;
}

/** A ranked product as the ranking routes show it. */
export interface RankedRow extends SalesRow {
  productName: string;
  price: number;
  stock: number;
}

/**
 * D1 queries behind rankings and best sellers. The aggregate is one range scan
 * of `order_items_paid_at_product_idx (paid_at, product_id, quantity)`, a
 * covering index: `paid_at` is set on an order's items when it is paid.
 */
export class RankingsRepo {
  constructor(private readonly d1: D1Database) {}

  static readonly SALES_SQL = `SELECT product_id AS productId, SUM(quantity) AS sales
    FROM order_items WHERE paid_at >= ?1 AND paid_at < ?2
    GROUP BY product_id ORDER BY sales DESC, product_id ASC LIMIT ?3`;

  /** Paid quantity per product with paid_at in [fromMs, toMs), best first. */
  async salesBetween(fromMs: number, toMs: number, limit: number): Promise<SalesRow[]> {
    const res = await this.d1.prepare(RankingsRepo.SALES_SQL).bind(fromMs, toMs, limit).all<SalesRow>();
    return res.results;
  }

  /**
   * `salesBetween` with each product's name, price and stock joined in, so a
   * ranking read is one round trip (docs/ARCHITECTURE.md §8).
   */
  async rankedBetween(fromMs: number, toMs: number, limit: number): Promise<RankedRow[]> {
    const res = await this.d1
      .prepare(
        `SELECT s.productId AS productId, p.name AS productName, p.price AS price, p.stock AS stock, s.sales AS sales
         FROM (${RankingsRepo.SALES_SQL}) s JOIN products p ON p.id = s.productId
         ORDER BY s.sales DESC, s.productId ASC`,
      )
      .bind(fromMs, toMs, limit)
      .all<RankedRow>();
    return res.results;
  }

  /** Today's best-seller snapshot with the products joined in (one round trip); undefined when there is none. */
  async readRankedSnapshot(businessDate: string): Promise<RankedRow[] | undefined> {
    const res = await this.d1
      .prepare(
        `SELECT s.product_id AS productId, p.name AS productName, p.price AS price, p.stock AS stock, s.sales AS sales
         FROM best_seller_snapshots s JOIN products p ON p.id = s.product_id
         WHERE s.business_date = ?1 ORDER BY s.rank`,
      )
      .bind(businessDate)
      .all<RankedRow>();
    return res.results.length > 0 ? res.results : undefined;
  }

  /**
   * Replaces the snapshot of one business day in one batch. A day with no sales
   * stores no rows; readers then fall through to the (cheap, empty) live query.
   */
  async writeSnapshot(businessDate: string, fromDate: string, toDate: string, rows: SalesRow[], at: number): Promise<void> {
    const stmts = [this.d1.prepare("DELETE FROM best_seller_snapshots WHERE business_date = ?1").bind(businessDate)];
    rows.forEach((r, i) => {
      stmts.push(
        this.d1
          .prepare(
            `INSERT INTO best_seller_snapshots (business_date, rank, product_id, sales, from_date, to_date, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`,
          )
          .bind(businessDate, i + 1, r.productId, r.sales, fromDate, toDate, at),
      );
    });
    await this.d1.batch(stmts);
  }
}
