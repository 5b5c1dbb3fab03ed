import type { Config } from "./config";
import { createDb, type Db } from "./db/client";
import type { Env } from "./env";
import { AdminRepo } from "./admin/admin.repo";
import { CouponsRepo } from "./coupons/coupons.repo";
import { PointsRepo } from "./points/points.repo";
import { PointsService } from "./points/points.service";
import { ProductsRepo } from "./products/products.repo";
import { now } from "./shared/clock";
import { OrdersRepo } from "./orders/orders.repo";
import { OrdersService } from "./orders/orders.service";
import { PaymentRepo } from "./orders/payment.repo";
import { PaymentService } from "./orders/payment.service";
import { DurableObjectStock, type StockPort } from "./products/product-stock.client";

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
  stock: StockPort;
  ordersRepo: OrdersRepo;
  orders: OrdersService;
  payments: PaymentService;
}

export function createServices(env: Env, config: Config, _ctx?: { waitUntil(promise: Promise<unknown>): void }): Services {
  const db = createDb(env.DB);
  const clock = now;
  const pointsRepo = new PointsRepo(db, env.DB);
  const stock = new DurableObjectStock(env.PRODUCT_STOCK);
  const ordersRepo = new OrdersRepo(env.DB);
  return {
    clock,
    db,
    points: new PointsService(pointsRepo, clock),
    productsRepo: new ProductsRepo(db),
    couponsRepo: new CouponsRepo(db),
    adminRepo: new AdminRepo(env.DB),
    stock,
    ordersRepo,
    orders: new OrdersService(ordersRepo, stock, clock, config.orderPaymentTtlMs),
    payments: new PaymentService(ordersRepo, new PaymentRepo(env.DB), stock, clock),
  };
}
