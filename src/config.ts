import { z } from "zod";
import { log, setLogLevel, type Level } from "./shared/logger";
import { isLocationHint, type LocationHint } from "./shared/object-placement";

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v.trim()));

const ConfigSchema = z.object({
  // Unset counts as deployed: only an explicit "development" (wrangler.toml's top-level vars) runs without secrets.
  ENVIRONMENT: optionalString,
  DO_LOCATION_HINT: optionalString.refine(
    (v) => v === undefined || isLocationHint(v),
    "DO_LOCATION_HINT must be a Durable Object location hint (wnam, enam, weur, eeur, apac, oc, ...)",
  ),
  BUSINESS_TIMEZONE: z
    .string()
    .default("Asia/Seoul")
    .refine((tz) => {
      try {
        new Intl.DateTimeFormat("en-US", { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    }, "BUSINESS_TIMEZONE must be an IANA time zone"),
  ORDER_PAYMENT_TTL_SECONDS: z.coerce.number().int().min(10).max(86_400).default(900),
  ADMIN_TOKEN: optionalString,
  UPSTASH_REDIS_REST_URL: optionalString,
  UPSTASH_REDIS_REST_TOKEN: optionalString,
  UPSTASH_KAFKA_REST_URL: optionalString,
  UPSTASH_KAFKA_REST_USERNAME: optionalString,
  UPSTASH_KAFKA_REST_PASSWORD: optionalString,
  DATA_PLATFORM_URL: optionalString,
  JWT_SECRET: optionalString,
  ALLOWED_ORIGINS: optionalString,
  RATE_LIMIT_WRITES_PER_MINUTE: z.coerce.number().int().min(0).default(0),
  RATE_LIMIT_IP_WRITES_PER_MINUTE: z.coerce.number().int().min(0).default(0),
  REDIS_KEY_PREFIX: z.string().default(""),
  EVENT_RETRY_BASE_SECONDS: z.coerce.number().int().min(0).max(60).default(2),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3_650).default(7),
  // Redis timeouts per purpose (src/infra/redis.ts): a request's path, and background work (crons, objects, after the answer).
  REDIS_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1).max(5_000).default(250),
  REDIS_BACKGROUND_TIMEOUT_MS: z.coerce.number().int().min(1).max(10_000).default(1_000),
  REDIS_BACKGROUND_RETRIES: z.coerce.number().int().min(0).max(3).default(1),
});

/** Typed configuration; also says which optional adapters are switched on. */
export interface Config {
  /** `ENVIRONMENT` ("development", "staging", "production"); "production" when unset. */
  environment: string;
  /**
   * Secrets this deployment needs and lacks. Outside development a missing JWT_SECRET or
   * ADMIN_TOKEN is a misconfiguration: user routes and the admin API answer 503 MISCONFIGURED
   * (src/shared/identity.ts, src/admin/admin-auth.ts) rather than run open. Empty in development.
   */
  missingSecrets: readonly ("JWT_SECRET" | "ADMIN_TOKEN")[];
  /** Where new Durable Objects are created (src/shared/object-placement.ts); undefined: near the caller. */
  doLocationHint: LocationHint | undefined;
  businessTimeZone: string;
  orderPaymentTtlMs: number;
  adminToken: string | undefined;
  redis: { url: string; token: string } | undefined;
  /** Per-purpose Redis timeouts (src/infra/redis.ts RedisLane). */
  redisTimeouts: { requestMs: number; backgroundMs: number; backgroundRetries: number };
  kafka: { url: string; username: string; password: string } | undefined;
  dataPlatformUrl: string | undefined;
  jwtSecret: string | undefined;
  allowedOrigins: string[];
  /**
   * Write limits per acting user and per client IP (0 = off). Each switches its `[[ratelimits]]`
   * binding on and is the limit announced in `RateLimit-Limit`: it must equal that binding's
   * `simple.limit` in wrangler.toml, which is what is enforced (`npm run config:check`).
   */
  writeLimits: { perUser: number; perIp: number };
  /** Prepended to every Redis key (lets several deployments or test files share one Redis). */
  redisKeyPrefix: string;
  eventRetryBaseSeconds: number;
  logLevel: Level;
  /** How long published outbox rows, delivery records and replayed dead letters are kept. */
  eventRetentionMs: number;
}

const cache = new WeakMap<object, Config>();

/**
 * Parses the env once per env object. A misconfiguration fails loudly (it is
 * a deployment bug, reported as 500 INTERNAL_ERROR with the cause in the log).
 */
export function loadConfig(env: Env): Config {
  const hit = cache.get(env);
  if (hit) return hit;
  const raw = ConfigSchema.parse(env);
  const environment = raw.ENVIRONMENT ?? "production";
  const missingSecrets =
    environment === "development" ? [] : (["JWT_SECRET", "ADMIN_TOKEN"] as const).filter((name) => raw[name] === undefined);
  const config: Config = {
    environment,
    missingSecrets,
    doLocationHint: raw.DO_LOCATION_HINT as LocationHint | undefined,
    businessTimeZone: raw.BUSINESS_TIMEZONE,
    orderPaymentTtlMs: raw.ORDER_PAYMENT_TTL_SECONDS * 1000,
    adminToken: raw.ADMIN_TOKEN,
    redis:
      raw.UPSTASH_REDIS_REST_URL && raw.UPSTASH_REDIS_REST_TOKEN
        ? { url: raw.UPSTASH_REDIS_REST_URL, token: raw.UPSTASH_REDIS_REST_TOKEN }
        : undefined,
    redisTimeouts: {
      requestMs: raw.REDIS_REQUEST_TIMEOUT_MS,
      backgroundMs: raw.REDIS_BACKGROUND_TIMEOUT_MS,
      backgroundRetries: raw.REDIS_BACKGROUND_RETRIES,
    },
    kafka:
      raw.UPSTASH_KAFKA_REST_URL && raw.UPSTASH_KAFKA_REST_USERNAME && raw.UPSTASH_KAFKA_REST_PASSWORD
        ? {
            url: raw.UPSTASH_KAFKA_REST_URL,
            username: raw.UPSTASH_KAFKA_REST_USERNAME,
            password: raw.UPSTASH_KAFKA_REST_PASSWORD,
          }
        : undefined,
    dataPlatformUrl: raw.DATA_PLATFORM_URL,
    jwtSecret: raw.JWT_SECRET,
    allowedOrigins: (raw.ALLOWED_ORIGINS ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    writeLimits: { perUser: raw.RATE_LIMIT_WRITES_PER_MINUTE, perIp: raw.RATE_LIMIT_IP_WRITES_PER_MINUTE },
    redisKeyPrefix: raw.REDIS_KEY_PREFIX,
    eventRetryBaseSeconds: raw.EVENT_RETRY_BASE_SECONDS,
    logLevel: raw.LOG_LEVEL,
    eventRetentionMs: raw.EVENT_RETENTION_DAYS * 86_400_000,
  };
  setLogLevel(config.logLevel);
  if (missingSecrets.length > 0) reportMissingSecrets(environment, missingSecrets);
  cache.set(env, config);
  return config;
}

let missingSecretsReported = false;

/**
 * One error line per isolate (not per request: a flash sale against a misconfigured deploy
 * would otherwise log a line per refusal). Written when the isolate first reads its config,
 * so a cron or queue batch reports it too, before any user has been refused.
 */
function reportMissingSecrets(environment: string, missing: readonly string[]): void {
  if (missingSecretsReported) return;
  missingSecretsReported = true;
  log("error", "misconfigured: required secrets are unset; user routes and the admin API answer 503 MISCONFIGURED", {
    environment,
    missing,
    fix: `npx wrangler secret put <NAME> --env ${environment}`,
  });
}
