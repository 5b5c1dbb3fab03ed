import { createApp } from "./app";
import { loadConfig } from "./config";
import { consumeDeadLetters, consumeEvents, isDeadLetterQueue } from "./events/consumer";
import { runScheduled } from "./jobs";
import { primaryD1 } from "./db/client";
import { HopMeter, meterD1 } from "./shared/hops";
import { log } from "./shared/logger";

export { CouponIssuer } from "./coupons/coupon-issuer.do";
export { ProductStock } from "./products/product-stock.do";

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
    const meter = new HopMeter();
    const started = Date.now();
    const deps = {
      d1: meterD1(primaryD1(env.DB), meter),
      dataPlatformUrl: config.dataPlatformUrl,
      retryBaseSeconds: config.eventRetryBaseSeconds,
      now: Date.now,
    };
    if (isDeadLetterQueue(batch.queue)) await consumeDeadLetters(batch, deps);
    else await consumeEvents(batch, deps);
    const d1 = meter.d1Cost();
    log("info", "queue batch done", {
      queue: batch.queue,
      messages: batch.messages.length,
      ms: Date.now() - started,
      d1Calls: d1.calls,
      d1RowsRead: d1.rowsRead,
      d1RowsWritten: d1.rowsWritten,
      d1WriteTx: d1.writeTx,
    });
  },
} satisfies ExportedHandler<Env>;
