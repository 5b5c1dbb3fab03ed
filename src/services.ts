import type { Config } from "./config";
import { createDb, type Db } from "./db/client";
import type { Env } from "./env";
import { AdminRepo } from "./admin/admin.repo";
import { CouponsRepo } from "./coupons/coupons.repo";
import { CouponsService, couponIssuerClient } from "./coupons/coupons.service";
import { PointsRepo } from "./points/points.repo";
import { PointsService } from "./points/points.service";
import { ProductsRepo } from "./products/products.repo";
import { now } from "./shared/clock";

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
  coupons: CouponsService;
  adminRepo: AdminRepo;
}

export function createServices(env: Env, _config: Config, _ctx?: { waitUntil(promise: Promise<unknown>): void }): Services {
  const db = createDb(env.DB);
  const clock = now;
  const pointsRepo = new PointsRepo(db, env.DB);
  return {
    clock,
    db,
    points: new PointsService(pointsRepo, clock),
    productsRepo: new ProductsRepo(db),
    couponsRepo: new CouponsRepo(db),
    coupons: new CouponsService(new CouponsRepo(db), couponIssuerClient(env.COUPON_ISSUER), clock),
    adminRepo: new AdminRepo(env.DB),
  };
}
