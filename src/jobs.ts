import { loadConfig } from "./config";
import { purgeFailedOrders, runOrderMaintenance } from "./orders/order-expiry.job";
import { refreshBestSellersJob, repairRankingJob } from "./rankings/rankings.jobs";
import { createServices, type Services } from "./services";
import { errorFields, log } from "./shared/logger";
import { purgeIdempotencyKeysJob } from "./shared/idempotency.job";
import { HopMeter } from "./shared/hops";

/** A scheduled job: gets the services and the trigger's scheduled time. */
export type Job = { name: string; run: (services: Services, now: number) => Promise<unknown> };

/**
 * Which cron expression (as in wrangler.toml `[triggers] crons`, UTC) runs which jobs.
 * Add a row per cron; a cron may run several jobs, one after another.
 * `30 15 * * *` is 00:30 in Asia/Seoul (the best-seller refresh).
 */
export const JOBS: Record<string, Job[]> = {
  "* * * * *": [
    {
      name: "order-maintenance",
      run: (s, now) => runOrderMaintenance({ sweep: s.orderSweep, stock: s.stock, couponCache: s.userCouponCache }, now),
    },
    { name: "outbox-relay", run: (s) => s.events.relay() },
    { name: "idempotency-purge", run: (s) => purgeIdempotencyKeysJob(s) },
  ],
  "*/10 * * * *": [
    { name: "ranking-repair", run: (s) => repairRankingJob(s) },
    { name: "failed-orders-purge", run: (s, now) => purgeFailedOrders({ repo: s.ordersRepo, clock: s.clock }, now) },
    { name: "event-retention", run: (s, now) => s.purgeEvents(now) },
  ],
  "30 15 * * *": [{ name: "best-sellers-refresh", run: (s) => refreshBestSellersJob(s) }],
};

/** Runs the jobs of one cron; a failing job is logged and does not stop the others. */
export async function runScheduled(
  cron: string,
  scheduledTime: number,
  env: Env,
  ctx?: { waitUntil(promise: Promise<unknown>): void },
): Promise<void> {
  const jobs = JOBS[cron];
  if (!jobs) {
    log("warn", "no job for cron", { cron });
    return;
  }
  const config = loadConfig(env);
  for (const job of jobs) {
    // Each job gets its own meter, so its log line says what it cost D1 (calls, rows, write
    // transactions) and the objects. On the primary (createServices' default): every job writes,
    // and expiry, repair and the best-seller refresh act on what they read, so a lagging replica
    // could skip due work.
    const meter = new HopMeter();
    const services = createServices(env, config, { ctx, meter, start: { kind: "primary" }, background: true });
    const started = Date.now();
    try {
      const result = await job.run(services, Math.max(scheduledTime, services.clock()));
      log("info", "job done", { cron, job: job.name, result, ms: Date.now() - started, ...jobCost(meter) });
    } catch (err) {
      log("error", "job failed", { cron, job: job.name, ms: Date.now() - started, ...jobCost(meter), ...errorFields(err) });
    }
  }
}

/** A job's cost for its log line: D1 calls, rows read and written, write transactions, object calls. */
function jobCost(meter: HopMeter): Record<string, number> {
  const d1 = meter.d1Cost();
  return { d1Calls: d1.calls, d1RowsRead: d1.rowsRead, d1RowsWritten: d1.rowsWritten, d1WriteTx: d1.writeTx, doCalls: meter.calls.do };
}
