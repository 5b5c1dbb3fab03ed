import type { MiddlewareHandler } from "hono";

/** What an id may look like to be echoed (Hono's request-id rule): word characters, `-` and `=`, at most 255. */
const SAFE_ID = /^[\w\-=]{1,255}$/;

/**
 * Sets `requestId` and the `X-Request-Id` answer header: Cloudflare's `cf-ray` when present
 * (the id Cloudflare's own logs, traces and error pages show, so one id finds a request
 * everywhere), else the caller's `X-Request-Id` (local tools), else a random UUID. A ray id
 * wins over a caller's id: a client must not choose the id an operator searches logs by.
 */
export const requestIdFromRay = (): MiddlewareHandler<{ Variables: { requestId: string } }> => async (c, next) => {
  const ray = c.req.header("cf-ray");
  const sent = c.req.header("x-request-id");
  const id = ray && SAFE_ID.test(ray) ? ray : sent && SAFE_ID.test(sent) ? sent : crypto.randomUUID();
  c.set("requestId", id);
  c.header("X-Request-Id", id);
  await next();
};
