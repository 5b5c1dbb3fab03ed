import type { Services } from "../services";
import { log } from "../shared/logger";

/** Cron: rebuild today's ranking ZSET from D1 (heals lost increments). */
export async function repairRankingJob(services: Services): Promise<void> {
  const result = await services.rankings.repairToday();
  log("info", "ranking repaired", result);
}

/** Cron at 00:30 business time: refresh the best-seller snapshot (D1 + Redis). */
export async function refreshBestSellersJob(services: Services): Promise<void> {
  const result = await services.rankings.refreshBestSellers();
  log("info", "best sellers refreshed", result);
}
