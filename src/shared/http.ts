import { OpenAPIHono } from "@hono/zod-openapi";
import type { Config } from "../config";
import type { Env } from "../env";
import type { Services } from "../services";
import type { z } from "@hono/zod-openapi";
import { envelopeOf, ErrorEnvelopeSchema } from "./envelope";
import { validationError } from "./validation";
import type { HopMeter } from "./hops";
import type { KeyClaim } from "./idempotency";
import type { RateLimitDecision } from "./rate-limiter.do";

/** Hono generics for every router of the app. */
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
    ipLimit?: Promise<RateLimitDecision | undefined>;
  };
}

/**
 * A sub-app whose validation failures become the error envelope (thrown as
 * AppError, so the one `onError` renders them).
 */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        throw validationError(result.error, result.target);
      }
      return undefined;
    },
  });
}

/** OpenAPI error responses for a route, by status. */
export function errorResponses(...statuses: number[]) {
  const out: Record<number, { description: string; content: { "application/json": { schema: typeof ErrorEnvelopeSchema } } }> = {};
  for (const s of statuses) {
    out[s] = { description: `Error (${s})`, content: { "application/json": { schema: ErrorEnvelopeSchema } } };
  }
  return out;
}

/** The JSON request body block of a route definition. */
export function jsonBody<T>(schema: T) {
  return { required: true, content: { "application/json": { schema } } } as const;
}

/** OpenAPI success response of a route: the envelope around `data`, under its status. */
export function okResponse<S extends 200 | 201, T extends z.ZodTypeAny>(status: S, description: string, data: T) {
  return { [status]: { description, content: { "application/json": { schema: envelopeOf(data, status) } } } } as {
    [K in S]: { description: string; content: { "application/json": { schema: ReturnType<typeof envelopeOf<T>> } } };
  };
}
