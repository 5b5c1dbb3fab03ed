import { createApp } from "./app";
import type { Env } from "./env";

export { CouponIssuer } from "./coupons/coupon-issuer.do";

const app = createApp();

/** Worker entry: HTTP via Hono. */
export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
