import { env } from "cloudflare:workers";
import { loadConfig } from "../../src/config";
import { JOBS } from "../../src/jobs";
import { createServices, type Services } from "../../src/services";
import { HopMeter, type D1Cost } from "../../src/shared/hops";

/** Services whose D1 calls are all counted by `meter` (rows read and written as D1 reports them). */
export function meteredServices(): { services: Services; meter: HopMeter } {
  const meter = new HopMeter();
  return { services: createServices(env, loadConfig(env), undefined, meter), meter };
}

/** Runs the job `name` of `cron` as registered in jobs.ts; returns what it reported and what it cost D1. */
export async function runJob(cron: string, name: string, now = Date.now()): Promise<{ result: any; d1: D1Cost }> {
  const job = JOBS[cron]?.find((j) => j.name === name);
  if (!job) throw new Error(`no job ${name} on ${cron}`);
  const { services, meter } = meteredServices();
  const result = await job.run(services, now);
  return { result, d1: meter.d1Cost() };
}
