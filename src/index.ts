import { createApp } from "./app";
import type { Env } from "./env";
import { runScheduled } from "./jobs";

export { ProductStock } from "./products/product-stock.do";

const app = createApp();

/** Worker entry: HTTP via Hono; Cron Triggers via the job table in jobs.ts. */
export default {
  fetch: app.fetch,
  scheduled(controller, env, ctx) {
    ctx.waitUntil(runScheduled(controller.cron, controller.scheduledTime, env, ctx));
  },
} satisfies ExportedHandler<Env>;
