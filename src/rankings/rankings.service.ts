import { addDays, businessDate, startOfBusinessDay } from "../shared/clock";
import type { ProductsRepo } from "../products/products.repo";
import type { PaidSale, RankingCache } from "./ranking.store";
import type { RankingsRepo, SalesRow } from "./rankings.repo";

/** How many best sellers are kept, and how many business days they cover. */
export const BEST_SELLER_COUNT = 5;
export const BEST_SELLER_DAYS = 3;
/** The repair job rebuilds at most this many products of a day's ranking. */
const REPAIR_LIMIT = 10_000;
/** The repair counts sales paid at least this long ago: a payment's batch commits well within it. */
export const REPAIR_LAG_MS = 5_000;

export interface RankedProduct {
  productId: number;
  productName: string;
  price: number;
  stock: number;
  sales: number;
}

/**
 * Today's ranking and the best sellers: Redis first, D1 as the source of truth
 * and fallback. Redis can always be rebuilt from D1 (`repairToday`, `refreshBestSellers`).
 */
/** What RankingsService is built from. */
export interface RankingsServiceDeps {
  repo: RankingsRepo;
  products: ProductsRepo;
  /** The daily ranking in Redis (or none: D1 answers). */
  cache: RankingCache;
  /** The business day's time zone (IANA name). */
  timeZone: string;
  clock: () => number;
}

export class RankingsService {
  private readonly repo: RankingsRepo;
  private readonly products: ProductsRepo;
  private readonly cache: RankingCache;
  private readonly timeZone: string;
  private readonly clock: () => number;

  constructor(deps: RankingsServiceDeps) {
    this.repo = deps.repo;
    this.products = deps.products;
    this.cache = deps.cache;
    this.timeZone = deps.timeZone;
    this.clock = deps.clock;
  }

  private dayWindow(date: string): [number, number] {
    return [startOfBusinessDay(date, this.timeZone), startOfBusinessDay(addDays(date, 1), this.timeZone)];
  }

  private async hydrate(rows: SalesRow[]): Promise<RankedProduct[]> {
    const byId = new Map((await this.products.findByIds(rows.map((r) => r.productId))).map((p) => [p.id, p]));
    return rows.flatMap((r) => {
      const p = byId.get(r.productId);
      return p ? [{ productId: p.id, productName: p.name, price: p.price, stock: p.stock, sales: r.sales }] : [];
    });
  }

  /** Today's top `size` products by paid quantity (ZSET; empty or unavailable -> D1 aggregate). */
  async topToday(size: number): Promise<{ date: string; products: RankedProduct[] }> {
    const date = businessDate(this.clock(), this.timeZone);
    const rows = await this.cache.topSales(date, size);
    if (rows && rows.length > 0) return { date, products: await this.hydrate(rows) };
    const [from, to] = this.dayWindow(date);
    return { date, products: await this.repo.rankedBetween(from, to, size) };
  }

  /** The window of best sellers for `today`: the three business days before it. */
  bestSellerWindow(today: string) {
    const from = addDays(today, -BEST_SELLER_DAYS);
    const to = addDays(today, -1);
    return { from, to, fromMs: startOfBusinessDay(from, this.timeZone), toMs: startOfBusinessDay(today, this.timeZone) };
  }

  /** Best sellers: Redis snapshot, then the D1 snapshot, then the live query. */
  async bestSellers(): Promise<{ bestSellers: Omit<RankedProduct, never>[]; from: string; to: string }> {
    const today = businessDate(this.clock(), this.timeZone);
    const w = this.bestSellerWindow(today);
    const cached = await this.cache.readBestSellers(today);
    if (cached) return { bestSellers: await this.hydrate(cached.items), from: w.from, to: w.to };
    const snapshot = await this.repo.readRankedSnapshot(today);
    if (snapshot) return { bestSellers: snapshot, from: w.from, to: w.to };
    // No snapshot yet (before 00:30, or the refresh failed): the live query reads the whole
    // three-day range (~120-220 ms on 1M items), so its result becomes today's snapshot and
    // only the first reader of the day pays for it (and its extra round trips).
    const rows = await this.repo.salesBetween(w.fromMs, w.toMs, BEST_SELLER_COUNT);
    if (rows.length > 0) await this.storeBestSellers(today, w, rows);
    return { bestSellers: await this.hydrate(rows), from: w.from, to: w.to };
  }

  /** Daily job (00:30 business time): compute, store the D1 snapshot and the Redis copy. */
  async refreshBestSellers(): Promise<{ date: string; count: number }> {
    const now = this.clock();
    const today = businessDate(now, this.timeZone);
    const w = this.bestSellerWindow(today);
    const rows = await this.repo.salesBetween(w.fromMs, w.toMs, BEST_SELLER_COUNT);
    await this.storeBestSellers(today, w, rows);
    return { date: today, count: rows.length };
  }

  private async storeBestSellers(today: string, w: { from: string; to: string }, rows: SalesRow[]): Promise<void> {
    await this.repo.writeSnapshot(today, w.from, w.to, rows, this.clock());
    await this.cache.writeBestSellers(today, { from: w.from, to: w.to, items: rows });
  }

  /**
   * Repair job: rebuilds today's ZSET from D1 so a lost increment heals. It counts the
   * sales paid up to a watermark REPAIR_LAG_MS before now (a payment's batch has committed
   * by then) and stores that watermark with the ZSET in one atomic step, so a late
   * increment of a sale already counted is dropped and one paid after it is kept.
   * Its D1 read is one range of `order_items_paid_at_product_idx` over today's paid lines
   * (the day it rebuilds, never earlier days); with no Redis configured there is no ZSET to
   * rebuild, and it reads nothing.
   */
  async repairToday(): Promise<{ date: string; products: number; written: boolean }> {
    const now = this.clock();
    const date = businessDate(now, this.timeZone);
    if (!this.cache.enabled) return { date, products: 0, written: false };
    const [from, to] = this.dayWindow(date);
    const watermark = Math.min(now - REPAIR_LAG_MS, to - 1);
    const rows = watermark < from ? [] : await this.repo.salesBetween(from, watermark + 1, REPAIR_LIMIT);
    const written = await this.cache.replaceDay(date, rows, watermark);
    return { date, products: rows.length, written };
  }

  /** After a payment commits: bump today's ZSET once for this order (best effort; the repair job heals misses). */
  async recordPaidOrder(sale: PaidSale): Promise<void> {
    await this.cache.incrementSales(businessDate(sale.paidAt, this.timeZone), sale);
  }
}
