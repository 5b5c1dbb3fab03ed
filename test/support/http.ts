import { exports } from "cloudflare:workers";

export const ADMIN_TOKEN = "test-admin-token";
const BASE = "http://example.com";

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** Calls the Worker's fetch handler (same isolate) and parses the JSON body. */
export async function call<T = any>(
  method: string,
  path: string,
  opts: { json?: unknown; body?: BodyInit; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers["content-type"] ??= "application/json";
  }
  const res = await exports.default.fetch(new Request(`${BASE}${path}`, { method, headers, body }));
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // leave as text (docs page)
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export const api = {
  get: <T = any>(path: string, headers?: Record<string, string>) => call<T>("GET", path, { headers }),
  post: <T = any>(path: string, json: unknown, headers?: Record<string, string>) => call<T>("POST", path, { json, headers }),
  patch: <T = any>(path: string, json: unknown, headers?: Record<string, string>) => call<T>("PATCH", path, { json, headers }),
  put: <T = any>(path: string, json: unknown, headers?: Record<string, string>) => call<T>("PUT", path, { json, headers }),
};

export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Admin helpers: each test creates its own rows (storage is isolated per file, not per test). */
export async function createUser(initialBalance = 0, name = "tester"): Promise<number> {
  const res = await api.post("/api/v1/admin/users", { name, initialBalance }, adminHeaders);
  if (res.status !== 201) throw new Error(`createUser: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data.userId;
}

export async function createProduct(price = 1000, stock = 10, name = "product"): Promise<number> {
  const res = await api.post("/api/v1/admin/products", { name, price, stock }, adminHeaders);
  if (res.status !== 201) throw new Error(`createProduct: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data.productId;
}

export async function createCoupon(
  input: Partial<{
    name: string;
    discountType: "RATE" | "AMOUNT";
    discountValue: number;
    quantity: number;
    startsAt: string;
    endsAt: string;
    validDays: number;
    shards: number;
  }> = {},
): Promise<number> {
  const body = {
    name: "coupon",
    discountType: "AMOUNT",
    discountValue: 1000,
    quantity: 100,
    startsAt: new Date(Date.now() - 3_600_000).toISOString(),
    endsAt: new Date(Date.now() + 30 * 86_400_000).toISOString(),
    ...input,
  };
  const res = await api.post("/api/v1/admin/coupons", body, adminHeaders);
  if (res.status !== 201) throw new Error(`createCoupon: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data.couponId;
}

/** Asserts the error envelope shape and returns the error code. */
export function errorCode(res: ApiResponse): string {
  const b = res.body;
  if (!b || typeof b !== "object" || typeof b.error !== "string" || typeof b.detail !== "string" || b.code !== res.status) {
    throw new Error(`not an error envelope: ${res.status} ${JSON.stringify(b)}`);
  }
  return b.error;
}
