import type { Config } from "./config";
import { createDb, type Db } from "./db/client";
import type { Env } from "./env";
import { AdminRepo } from "./admin/admin.repo";
import { CouponsRepo } from "./coupons/coupons.repo";
import { PointsRepo } from "./points/points.repo";
import { PointsService } from "./points/points.service";
import { ProductsRepo } from "./products/products.repo";
import { now } from "./shared/clock";
import { createRedis } from "./infra/redis";
import { noRankingCache, redisRankingCache } from "./rankings/ranking.store";
import { RankingsRepo } from "./rankings/rankings.repo";
import { RankingsService } from "./rankings/rankings.service";

/**
 * Everything a handler may use, built once per request (or per cron/queue
 * invocation) from the bindings. Handlers never touch raw bindings.
 */
export interface Services {
  clock: () => number;
  db: Db;
  points: PointsService;
  productsRepo: ProductsRepo;
  couponsRepo: CouponsRepo;
  adminRepo: AdminRepo;
  rankings: RankingsService;
}

export function createServices(env: Env, config: Config, _ctx?: { waitUntil(promise: Promise<unknown>): void }): Services {
  const db = createDb(env.DB);
  const clock = now;
  const pointsRepo = new PointsRepo(db, env.DB);
  const productsRepo = new ProductsRepo(db);
  const redis = createRedis(config);
  const rankingCache = redis ? redisRankingCache(redis, config.redisKeyPrefix) : noRankingCache;
  return {
    rankings: new RankingsService(new RankingsRepo(env.DB), productsRepo, rankingCache, config.businessTimeZone, clock),
    clock,
    db,
    points: new PointsService(pointsRepo, clock),
    productsRepo,
    couponsRepo: new CouponsRepo(db),
    adminRepo: new AdminRepo(env.DB),
  };
}
