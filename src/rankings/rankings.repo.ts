/** A product's paid quantity in a window. */
export interface SalesRow {
  productId: number;
  sales: number;
}

export interface SnapshotRow extends SalesRow {
  rank: number;
  fromDate: string;
  toDate: string;
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

  async readSnapshot(businessDate: string): Promise<SnapshotRow[] | undefined> {
    const res = await this.d1
      .prepare(
        `SELECT rank, product_id AS productId, sales, from_date AS fromDate, to_date AS toDate
         FROM best_seller_snapshots WHERE business_date = ?1 ORDER BY rank`,
      )
      .bind(businessDate)
      .all<SnapshotRow>();
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
