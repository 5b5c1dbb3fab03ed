import { createApp } from "./app";
import { loadConfig } from "./config";
import { consumeDeadLetters, consumeEvents } from "./events/consumer";
import { runScheduled } from "./jobs";
import { primaryD1 } from "./db/client";

export { CouponIssuer } from "./coupons/coupon-issuer.do";
export { ProductStock } from "./products/product-stock.do";
export { RateLimiter } from "./shared/rate-limiter.do";

const app = createApp();

/** Worker entry: HTTP (Hono), Cron Triggers, and the events queue consumers. */
export default {
  fetch: app.fetch,
  async scheduled(controller, env, ctx) {
    await runScheduled(controller.cron, controller.scheduledTime, env, ctx);
  },
  async queue(batch, env) {
    const config = loadConfig(env);
    // The consumer records deliveries and must see every earlier one (idempotency on the event id): primary.
    const deps = { d1: primaryD1(env.DB), dataPlatformUrl: config.dataPlatformUrl, retryBaseSeconds: config.eventRetryBaseSeconds, now: Date.now };
    if (batch.queue.endsWith("-dlq")) await consumeDeadLetters(batch, deps);
    else await consumeEvents(batch, deps);
  },
} satisfies ExportedHandler<Env>;
