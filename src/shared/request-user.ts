import type { Context } from "hono";
import { AppError } from "./errors";

/** The JSON body of a write, read once through Hono's body cache (the route validator reads the same cached text). */
export type JsonBody = { kind: "none" } | { kind: "json"; text: string; value: unknown };

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH"]);

/** True for the methods that change state (and carry a JSON body under /api). */
export function isWrite(method: string): boolean {
  return WRITE_METHODS.has(method);
}

/** True for `/api/v1/admin` and below: guarded by ADMIN_TOKEN, not by user identity. */
export function isAdminPath(path: string): boolean {
  return path === "/api/v1/admin" || path.startsWith("/api/v1/admin/");
}

/** One coupon's availability (`/coupons/{couponId}`, and any one-segment path under /coupons: a bad id is 400 for everyone). */
const COUPON_READ = /^\/api\/v1\/coupons\/[^/]+$/;

/**
 * Catalogue reads are public: GET/HEAD on /products, /products/{id}, /products/top,
 * /products/best, and a coupon's availability (/coupons/{couponId}, a sale page's poll).
 * They need no identity, may read a D1 replica and are edge-cached. A user's own
 * coupons (/coupons?userId=) are not.
 */
export function isPublicRead(method: string, path: string): boolean {
  if (method !== "GET" && method !== "HEAD") return false;
  return path === "/api/v1/products" || path.startsWith("/api/v1/products/") || COUPON_READ.test(path);
}

/**
 * Reads a write's body as text and parses it. Malformed JSON is the same
 * 400 VALIDATION_FAILED the route validator would give, so a guard that looks
 * at the body never turns a bad request into 401/403/500.
 */
export async function readJsonBody(c: Context): Promise<JsonBody> {
  if (!isWrite(c.req.method) || !c.req.raw.body) return { kind: "none" };
  const text = await c.req.text();
  try {
    return { kind: "json", text, value: JSON.parse(text) as unknown };
  } catch {
    throw new AppError("VALIDATION_FAILED", "body: malformed JSON");
  }
}

/**
 * Every `userId` the request names, as the strings the client sent: each
 * `?userId=` query value and the JSON body's `userId` field. Routes take the
 * acting user from exactly these places, so identity and idempotency key on them.
 */
export async function requestUserIds(c: Context): Promise<string[]> {
  const ids = [...(c.req.queries("userId") ?? [])];
  const body = await readJsonBody(c);
  if (body.kind === "json" && body.value !== null && typeof body.value === "object" && !Array.isArray(body.value)) {
    if (Object.hasOwn(body.value, "userId")) {
      const v = (body.value as Record<string, unknown>).userId;
      ids.push(typeof v === "number" || typeof v === "string" ? String(v) : (JSON.stringify(v) ?? "undefined"));
    }
  }
  return ids;
}

/** The one acting user id when it is a positive safe integer named consistently, else undefined. */
export async function requestUserId(c: Context): Promise<number | undefined> {
  const ids = await requestUserIds(c);
  if (ids.length === 0 || ids.some((id) => id !== ids[0])) return undefined;
  const n = Number(ids[0]);
  return /^[1-9][0-9]{0,15}$/.test(ids[0]!) && Number.isSafeInteger(n) ? n : undefined;
}
