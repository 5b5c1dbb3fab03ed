import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import { type AppError, STATUS_MESSAGES, type ErrorCode } from "./errors";

/** Success envelope: `{code, message, data}`. */
export function ok<T, S extends 200 | 201 = 200>(c: Context, data: T, status?: S) {
  const code = (status ?? 200) as S;
  const message: string = STATUS_MESSAGES[code] ?? "";
  return c.json({ code, message, data }, code);
}

/** The success envelope as the JSON text `ok()` sends (stored with an Idempotency-Key in the effect's batch). */
export function envelopeJson(data: unknown, status: 200 | 201 = 200): string {
  return JSON.stringify({ code: status, message: STATUS_MESSAGES[status] ?? "", data });
}

/** Error envelope: `{code, error, message, detail}`; never carries a stack trace. */
export function errorBody(err: AppError) {
  return {
    code: err.status,
    error: err.code,
    message: STATUS_MESSAGES[err.status] ?? STATUS_MESSAGES[500]!,
    detail: err.detail,
  };
}

/** The context slice `errorResponse` writes: the code of the error answered (request log, metrics). */
export interface ErrorCodeEnv {
  Variables: { errorCode?: ErrorCode };
}

export function errorResponse(c: Context, err: AppError) {
  (c as Context<ErrorCodeEnv>).set("errorCode", err.code);
  return c.json(errorBody(err), err.status, err.headers);
}

/** OpenAPI schema of the error envelope, shared by every route's error responses. */
export const ErrorEnvelopeSchema = z
  .object({
    code: z.number().int().openapi({ example: 409 }),
    error: z.string().openapi({ example: "COUPON_SOLD_OUT" }),
    message: z.string().openapi({ example: "비즈니스 정책을 위반한 요청입니다." }),
    detail: z.string().openapi({ example: "쿠폰이 모두 소진되었습니다." }),
  })
  .openapi("Error");

/** Wraps a data schema in the success envelope for OpenAPI. */
export function envelopeOf<T extends z.ZodTypeAny>(data: T, status: 200 | 201 = 200) {
  return z.object({
    code: z.number().int().openapi({ example: status }),
    message: z.string().openapi({ example: STATUS_MESSAGES[status] }),
    data,
  });
}
