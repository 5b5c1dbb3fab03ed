import type { Redis } from "@upstash/redis/cloudflare";
import { tryRedis } from "../infra/redis";
import type { SalesRow } from "./rankings.repo";

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
  incrementSales(date: string, items: { productId: number; quantity: number }[]): Promise<void>;
  topSales(date: string, size: number): Promise<SalesRow[] | undefined>;
  replaceDay(date: string, rows: SalesRow[]): Promise<boolean>;
  readBestSellers(date: string): Promise<BestSellersCacheEntry | undefined>;
  writeBestSellers(date: string, entry: BestSellersCacheEntry): Promise<void>;
}

/** Used when Redis is not configured. */
export const noRankingCache: RankingCache = {
  incrementSales: async () => {},
  topSales: async () => undefined,
  replaceDay: async () => false,
  readBestSellers: async () => undefined,
  writeBestSellers: async () => {},
};

export function redisRankingCache(redis: Redis, prefix: string): RankingCache {
  const rankingKey = (date: string) => `${prefix}ranking:daily:${date}`;
  const bestKey = (date: string) => `${prefix}bestSellers:${date}`;
  return {
    async incrementSales(date, items) {
      if (items.length === 0) return;
      await tryRedis("ranking.increment", async () => {
        const p = redis.pipeline();
        for (const item of items) p.zincrby(rankingKey(date), item.quantity, String(item.productId));
        p.expire(rankingKey(date), RANKING_TTL_SECONDS);
        await p.exec();
      });
    },
    async topSales(date, size) {
      const rows = await tryRedis("ranking.top", () =>
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
    async replaceDay(date, rows) {
      const done = await tryRedis("ranking.replace", async () => {
        const m = redis.multi();
        m.del(rankingKey(date));
        for (const r of rows) m.zadd(rankingKey(date), { score: r.sales, member: String(r.productId) });
        m.expire(rankingKey(date), RANKING_TTL_SECONDS);
        await m.exec();
        return true;
      });
      return done === true;
    },
    async readBestSellers(date) {
      const hit = await tryRedis("bestSellers.read", () => redis.get<BestSellersCacheEntry>(bestKey(date)));
      return hit ?? undefined;
    },
    async writeBestSellers(date, entry) {
      await tryRedis("bestSellers.write", () => redis.set(bestKey(date), entry, { ex: BEST_SELLERS_TTL_SECONDS }));
    },
  };
}
