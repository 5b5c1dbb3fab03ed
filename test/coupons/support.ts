import { env } from "cloudflare:workers";
import { api, createUser } from "../support/http";

/** The CouponIssuer DO of a coupon (same addressing as the app). */
export const issuerOf = (couponId: number) => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(String(couponId)));

export const issue = (couponId: number, userId: number) => api.post("/api/v1/coupons/issue", { userId, couponId });

/** Creates `n` users, a few at a time. */
export async function createUsers(n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i += 25) {
    ids.push(...(await Promise.all(Array.from({ length: Math.min(25, n - i) }, () => createUser()))));
  }
  return ids;
}

/** The D1 side of a coupon: its user_coupons users (sorted), issued_quantity, outbox event count. */
export async function d1State(couponId: number) {
  const rows = await env.DB.prepare("SELECT user_id FROM user_coupons WHERE coupon_id = ? ORDER BY user_id")
    .bind(couponId)
    .all<{ user_id: number }>();
  const issued = await env.DB.prepare("SELECT issued_quantity, quantity FROM coupons WHERE id = ?")
    .bind(couponId)
    .first<{ issued_quantity: number; quantity: number }>();
  const events = await env.DB.prepare("SELECT count(*) AS n FROM outbox WHERE type = 'coupon.issued' AND aggregate_id = ?")
    .bind(String(couponId))
    .first<number>("n");
  return {
    users: rows.results.map((r) => r.user_id),
    issuedQuantity: issued?.issued_quantity,
    quantity: issued?.quantity,
    events,
  };
}

/** Counts responses by status and error code. */
export function tally(responses: { status: number; body: any }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of responses) {
    const key = r.status === 201 ? "201" : `${r.status} ${r.body?.error}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

/** `n` users inserted straight into D1, 1,000 a statement (for tests that need thousands; no balances). */
export async function insertUsers(n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i += 1_000) {
    const m = Math.min(1_000, n - i);
    const rows = await env.DB.prepare("INSERT INTO users (name, created_at) SELECT 'bulk', 0 FROM json_each(?) RETURNING id")
      .bind(JSON.stringify(Array(m).fill(0)))
      .all<{ id: number }>();
    ids.push(...rows.results.map((r) => r.id));
  }
  return ids;
}
