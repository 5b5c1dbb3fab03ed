import { OpenAPIHono } from "@hono/zod-openapi";
import type { Env as HonoEnv } from "hono";
import type { z } from "@hono/zod-openapi";
import { envelopeOf, ErrorEnvelopeSchema } from "./envelope";
import { validationError } from "./validation";

/**
 * A sub-app whose validation failures become the error envelope (thrown as
 * AppError, so the one `onError` renders them). `E` is the app's context type
 * (`AppEnv`), passed by each router so this module needs not know it.
 */
export function createRouter<E extends HonoEnv>() {
  return new OpenAPIHono<E>({
    defaultHook: (result, _c) => {
      if (!result.success) {
        throw validationError(result.error, result.target);
      }
      return undefined;
    },
  });
}

type ErrorResponse = { description: string; content: { "application/json": { schema: typeof ErrorEnvelopeSchema } } };

/**
 * OpenAPI error responses for a route, by status. Keyed by the literal statuses, so the
 * route's type (and a `hc<AppType>` client) knows each error answer's status and body.
 */
export function errorResponses<S extends number>(...statuses: S[]): { [K in S]: ErrorResponse } {
  const out: Record<number, ErrorResponse> = {};
  for (const s of statuses) {
    out[s] = { description: `Error (${s})`, content: { "application/json": { schema: ErrorEnvelopeSchema } } };
  }
  return out as { [K in S]: ErrorResponse };
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
