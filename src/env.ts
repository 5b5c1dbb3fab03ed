/**
 * The Worker's bindings and vars, declared once. `Cloudflare.Env` is augmented
 * so `env` from `cloudflare:workers` (used by the tests) is typed too.
 */
import type { ProductStock } from "./products/product-stock.do";

export interface Env {
  DB: D1Database;
  EVENTS_QUEUE: Queue;
  /** One CouponIssuer per coupon, addressed by `idFromName(String(couponId))`. */
  COUPON_ISSUER: DurableObjectNamespace<import("./coupons/coupon-issuer.do").CouponIssuer>;
  PRODUCT_STOCK: DurableObjectNamespace<ProductStock>;
  /** One RateLimiter per key (`user:{id}`, `ip:{addr}`), addressed by `idFromName(key)`. */
  RATE_LIMITER: DurableObjectNamespace<import("./shared/rate-limiter.do").RateLimiter>;
  BUSINESS_TIMEZONE?: string;
  ORDER_PAYMENT_TTL_SECONDS?: string;
  ADMIN_TOKEN?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  UPSTASH_KAFKA_REST_URL?: string;
  UPSTASH_KAFKA_REST_USERNAME?: string;
  UPSTASH_KAFKA_REST_PASSWORD?: string;
  DATA_PLATFORM_URL?: string;
  JWT_SECRET?: string;
  ALLOWED_ORIGINS?: string;
  RATE_LIMIT_WRITES_PER_MINUTE?: string;
  REDIS_KEY_PREFIX?: string;
  EVENT_RETRY_BASE_SECONDS?: string;
  LOG_LEVEL?: string;
  EVENT_RETENTION_DAYS?: string;
}

type AppBindings = Env;

declare global {
  namespace Cloudflare {
    interface Env extends AppBindings {}
    interface GlobalProps {
      mainModule: typeof import("./index");
    }
  }
}
