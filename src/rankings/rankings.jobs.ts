import type { Services } from "../services";

/** Cron: rebuild today's ranking ZSET from D1 (heals lost increments); the result is the job's `job done` result. */
export function repairRankingJob(services: Services): Promise<{ date: string; products: number; written: boolean }> {
  return services.rankings.repairToday();
}

/** Cron at 00:30 business time: refresh the best-seller snapshot (D1 + Redis); the result is the job's `job done` result. */
export function refreshBestSellersJob(services: Services): Promise<{ date: string; count: number }> {
  return services.rankings.refreshBestSellers();
}
