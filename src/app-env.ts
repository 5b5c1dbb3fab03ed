import type { Config } from "./config";
import type { Services } from "./services";
import type { HopMeter } from "./shared/hops";
import type { IdempotencyEnv, KeyClaim } from "./shared/idempotency";
import type { IdentityEnv } from "./shared/identity";
import type { RateLimitEnv } from "./shared/rate-limit";
import type { ErrorCodeEnv } from "./shared/envelope";

/**
 * Hono generics of the app and every router. It lives beside the composition
 * root (services.ts assembles what it names) so that `shared/` never imports
 * `Services` or `Config`: each shared middleware declares the slice of the
 * context it reads (`IdempotencyEnv`, `RateLimitEnv`, `IdentityEnv`), and this
 * type must satisfy all of them (checked below). Routers import it as a type.
 * `Env` is the generated binding type (worker-configuration.d.ts).
 */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    services: Services;
    config: Config;
    requestId: string;
    /** Round trips of this request (Server-Timing, request log). */
    meter: HopMeter;
    /** The request's Idempotency-Key, when it sent one (src/shared/idempotency.ts). */
    idempotency?: KeyClaim;
    /** The per-IP write limit's decision, started before identity and awaited with the per-user one. */
    ipLimit?: RateLimitEnv["Variables"]["ipLimit"];
    /** The error code this request was answered with, if any (set by errorResponse; request log and metrics). */
    errorCode?: ErrorCodeEnv["Variables"]["errorCode"];
  };
}

// Compile-time proof that the app's context carries what each shared middleware reads.
type Satisfies<T extends U, U> = T;
export type _EdgeSlices = [
  Satisfies<AppEnv["Variables"], IdempotencyEnv["Variables"]>,
  Satisfies<AppEnv["Variables"], RateLimitEnv["Variables"]>,
  Satisfies<AppEnv["Variables"], IdentityEnv["Variables"]>,
  Satisfies<AppEnv["Variables"], ErrorCodeEnv["Variables"]>,
];
