import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { sign } from "hono/jwt";
import { createApp, type AppOptions } from "../../src/app";
import type { ApiResponse } from "./http";

export const JWT_SECRET = "test-jwt-secret-0123456789abcdef";

/** An HS256 token for `sub`, valid for an hour unless `claims` says otherwise. */
export function tokenFor(
  userId: number | string,
  claims: Record<string, unknown> = {},
  secret = JWT_SECRET,
  alg: "HS256" | "HS512" = "HS256",
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub: String(userId), iat: now, exp: now + 3600, ...claims }, secret, alg);
}

const b64url = (value: unknown) => btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");

/** An unsigned `alg: none` token (must always be refused). */
export function noneToken(userId: number): string {
  const now = Math.floor(Date.now() / 1000);
  return `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ sub: String(userId), exp: now + 3600 })}.`;
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * A fresh app (same D1 and DO bindings as the test file) under an env of the
 * test's choosing, e.g. with JWT_SECRET or RATE_LIMIT_WRITES_PER_MINUTE set.
 */
export function testApp(extraEnv: Record<string, unknown>, options: AppOptions = {}) {
  const app = createApp(options);
  const appEnv = { ...env, ...extraEnv };
  async function call<T = any>(
    method: string,
    path: string,
    init: { json?: unknown; body?: string; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse<T>> {
    const ctx = createExecutionContext();
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    let body = init.body;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers["content-type"] ??= "application/json";
    }
    const res = await app.request(`http://example.com${path}`, { method, headers, body }, appEnv, ctx);
    await waitOnExecutionContext(ctx);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON
    }
    return { status: res.status, headers: res.headers, body: parsed as T };
  }
  return {
    env: appEnv,
    call,
    get: <T = any>(path: string, headers?: Record<string, string>) => call<T>("GET", path, { headers }),
    post: <T = any>(path: string, json: unknown, headers?: Record<string, string>) => call<T>("POST", path, { json, headers }),
    patch: <T = any>(path: string, json: unknown, headers?: Record<string, string>) => call<T>("PATCH", path, { json, headers }),
  };
}

/** Balance and history count of a user, straight from D1 (what a refused request must not change). */
export async function pointsState(userId: number) {
  return env.DB.prepare(
    `SELECT (SELECT balance FROM user_balances WHERE user_id = ?1) AS balance,
            (SELECT count(*) FROM point_history WHERE user_id = ?1) AS history`,
  )
    .bind(userId)
    .first<{ balance: number; history: number }>();
}

/** Every way a token can fail to prove who is calling: each must be 401 with a Bearer challenge. */
export async function badTokens(userId: number): Promise<[string, Record<string, string>][]> {
  const now = Math.floor(Date.now() / 1000);
  return [
    ["no header", {}],
    ["Basic scheme", { authorization: `Basic ${btoa(`${userId}:x`)}` }],
    ["Bearer without token", { authorization: "Bearer " }],
    ["not a JWT", { authorization: "Bearer not-a-jwt" }],
    ["bad signature", bearer(await tokenFor(userId, {}, "some-other-secret"))],
    ["expired", bearer(await tokenFor(userId, { iat: now - 7200, exp: now - 3600 }))],
    ["not yet valid", bearer(await tokenFor(userId, { nbf: now + 3600 }))],
    ["HS512 instead of HS256", bearer(await tokenFor(userId, {}, JWT_SECRET, "HS512"))],
    ["alg none", bearer(noneToken(userId))],
    ["no exp", bearer(await tokenFor(userId, { exp: undefined }))],
    ["no sub", bearer(await tokenFor(userId, { sub: undefined }))],
    ["numeric sub", bearer(await tokenFor(userId, { sub: userId }))],
  ];
}
