import { env } from "cloudflare:workers";
import { loadConfig } from "../../src/config";
import { JOBS } from "../../src/jobs";
import { createServices, type Services } from "../../src/services";
import { HopMeter, type D1Cost } from "../../src/shared/hops";
import { STALE_PENDING_MS } from "../../src/orders/order-expiry.job";
import { createCoupon, createProduct, createUser } from "./http";
import { backdateExpiry, createUserCoupon, placedOrderId } from "./orders";

/** Services whose D1 calls are all counted by `meter` (rows read and written as D1 reports them). */
export function meteredServices(): { services: Services; meter: HopMeter } {
  const meter = new HopMeter();
  return { services: createServices(env, loadConfig(env), { meter }), meter };
}

/** Runs the job `name` of `cron` as registered in jobs.ts; returns what it reported and what it cost D1. */
export async function runJob(cron: string, name: string, now = Date.now()): Promise<{ result: any; d1: D1Cost }> {
  const job = JOBS[cron]?.find((j) => j.name === name);
  if (!job) throw new Error(`no job ${name} on ${cron}`);
  const { services, meter } = meteredServices();
  const result = await job.run(services, now);
  return { result, d1: meter.d1Cost() };
}

/** One order of each kind the every-minute sweeps move: expiring with a coupon, a dead placement, an unsettled cancel. */
export async function dueOrders() {
  const userId = await createUser();
  const p = await createProduct(100, 10);
  const coupon = await createUserCoupon(userId, await createCoupon());
  const expiring = await placedOrderId(userId, [[p, 1]], coupon);
  await backdateExpiry(expiring);
  await env.DB.prepare(
    `INSERT INTO orders (user_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at)
     VALUES (?1, 'PENDING', 0, 0, 0, ?2, ?2, ?2)`,
  )
    .bind(userId, Date.now() - STALE_PENDING_MS - 60_000)
    .run();
  const cancelled = await placedOrderId(userId, [[p, 1]]);
  await env.DB.prepare("UPDATE orders SET status = 'CANCELLED', updated_at = ? WHERE id = ?")
    .bind(Date.now() - 60_000, cancelled)
    .run();
  return { coupon };
}
