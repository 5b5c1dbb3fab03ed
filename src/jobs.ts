import { loadConfig } from "./config";
import type { Env } from "./env";
import { createServices, type Services } from "./services";
import { refreshBestSellersJob, repairRankingJob } from "./rankings/rankings.jobs";
import { errorFields, log } from "./shared/logger";
import { purgeIdempotencyKeysJob } from "./shared/idempotency.job";

type Job = (services: Services) => Promise<void>;

async function relayOutboxJob(services: Services): Promise<void> {
  await services.events.relay();
}

/**
 * Which cron runs which jobs. The expressions must match `[triggers] crons` in
 * wrangler.toml (UTC). `30 15 * * *` is 00:30 in Asia/Seoul.
 */
export const CRON_JOBS: Record<string, { name: string; run: Job }[]> = {
  "* * * * *": [
    { name: "outbox-relay", run: relayOutboxJob },
    { name: "idempotency-purge", run: purgeIdempotencyKeysJob },
  ],
  "*/10 * * * *": [{ name: "ranking-repair", run: repairRankingJob }],
  "30 15 * * *": [{ name: "best-sellers-refresh", run: refreshBestSellersJob }],
};

/** The Worker's `scheduled` handler: runs every job of the cron; one failing job does not stop the others. */
export async function runScheduled(cron: string, env: Env, ctx: ExecutionContext): Promise<void> {
  const jobs = CRON_JOBS[cron];
  if (!jobs) {
    log("warn", "no jobs for cron", { cron });
    return;
  }
  const services = createServices(env, loadConfig(env), ctx);
  const results = await Promise.allSettled(
    jobs.map(async (job) => {
      const started = Date.now();
      await job.run(services);
      log("info", "job done", { job: job.name, cron, ms: Date.now() - started });
    }),
  );
  results.forEach((r, i) => {
    if (r.status === "rejected") log("error", "job failed", { job: jobs[i]!.name, cron, ...errorFields(r.reason) });
  });
}
