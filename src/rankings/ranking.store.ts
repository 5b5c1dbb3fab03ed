import { tryRedis, type RedisLanes } from "../infra/redis";
import type { SalesRow } from "./rankings.repo";
import { INCREMENT_ONCE, REPLACE_DAY } from "./ranking.scripts";

/** Daily ranking ZSETs live four days; best-seller snapshots 25 hours. */
export const RANKING_TTL_SECONDS = 4 * 86_400;
export const BEST_SELLERS_TTL_SECONDS = 25 * 3_600;

export interface BestSellersCacheEntry {
  from: string;
  to: string;
  items: SalesRow[];
}

/**
 * The Redis side of rankings. Every method is best effort: reads return
 * `undefined` when Redis is off or failing (callers go to D1); writes are
 * dropped with a warning (the repair cron heals the ranking).
 */
export interface RankingCache {
  /** False when there is no Redis at all: then nothing reads what the repair would write. */
  readonly enabled: boolean;
  /** Counts one paid order in its day's ranking, at most once, and never again after a repair that included it. */
  incrementSales(date: string, sale: PaidSale): Promise<void>;
  topSales(date: string, size: number): Promise<SalesRow[] | undefined>;
  /** Replaces the day with D1's sales paid at or before `watermark`, keeping increments paid after it. */
  replaceDay(date: string, rows: SalesRow[], watermark: number): Promise<boolean>;
  readBestSellers(date: string): Promise<BestSellersCacheEntry | undefined>;
  writeBestSellers(date: string, entry: BestSellersCacheEntry): Promise<void>;
}

/** A paid order as the ranking counts it. */
export interface PaidSale {
  orderId: number;
  paidAt: number;
  items: { productId: number; quantity: number }[];
}

/** Used when Redis is not configured. */
export const noRankingCache: RankingCache = {
  enabled: false,
  incrementSales: async () => {},
  topSales: async () => undefined,
  replaceDay: async () => false,
  readBestSellers: async () => undefined,
  writeBestSellers: async () => {},
};

/** Reads on the request lane (a request waits, then D1 answers); increments (after the answer) and the crons' writes on the background lane. */
export function redisRankingCache(lanes: RedisLanes, prefix: string): RankingCache {
  const rankingKey = (date: string) => `${prefix}ranking:daily:${date}`;
  const bestKey = (date: string) => `${prefix}bestSellers:${date}`;
  const dayKeys = (date: string) => [rankingKey(date), `${rankingKey(date)}:asof`, `${rankingKey(date)}:recent`];
  return {
    enabled: true,
    async incrementSales(date, sale) {
      if (sale.items.length === 0) return;
      const items = JSON.stringify(sale.items.map((i) => [i.productId, i.quantity]));
      await tryRedis(lanes.background, "ranking.increment", (redis) =>
        redis.eval(INCREMENT_ONCE, dayKeys(date), [String(sale.paidAt), String(sale.orderId), items, String(RANKING_TTL_SECONDS)]),
      );
    },
    async topSales(date, size) {
      const rows = await tryRedis(lanes.request, "ranking.top", (redis) =>
        redis.zrange<[number, number][]>(rankingKey(date), 0, size - 1, { rev: true, withScores: true }),
      );
      if (rows === undefined) return undefined;
      // The client returns [member, score] pairs; members are product ids.
      const out = (rows as unknown as [unknown, unknown][]).map(([member, score]) => ({
        productId: Number(member),
        sales: Number(score),
      }));
      // Ties: ZREVRANGE orders equal scores by member descending; we promise id ascending.
      return out.sort((a, b) => b.sales - a.sales || a.productId - b.productId);
    },
    async replaceDay(date, rows, watermark) {
      const pairs = rows.flatMap((r) => [String(r.sales), String(r.productId)]);
      const done = await tryRedis(lanes.background, "ranking.replace", async (redis) => {
        await redis.eval(REPLACE_DAY, dayKeys(date), [String(watermark), String(RANKING_TTL_SECONDS), ...pairs]);
        return true;
      });
      return done === true;
    },
    async readBestSellers(date) {
      const hit = await tryRedis(lanes.request, "bestSellers.read", (redis) => redis.get<BestSellersCacheEntry>(bestKey(date)));
      return hit ?? undefined;
    },
    async writeBestSellers(date, entry) {
      await tryRedis(lanes.background, "bestSellers.write", (redis) => redis.set(bestKey(date), entry, { ex: BEST_SELLERS_TTL_SECONDS }));
    },
  };
}
