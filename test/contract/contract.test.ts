import { Validator } from "@cfworker/json-schema";
import { dereference } from "@readme/openapi-parser";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { adminHeaders, api, call, createCoupon, createProduct, createUser, type ApiResponse } from "../support/http";
import { placeOrder } from "../support/orders";
import { JWT_SECRET, testApp } from "../support/secure-app";

/**
 * Calls every operation the document lists and checks each answer's status against the
 * declared responses and its body against the declared schema (JSON Schema 2020-12, with
 * @cfworker/json-schema, which runs in workerd). A route added without a request here fails
 * the first test, so the document and this list cannot drift apart.
 */
interface Req {
  path: string;
  json?: unknown;
  headers?: Record<string, string>;
  status: number;
}

let doc: any;
let fixtures: Record<string, () => Req>;

beforeAll(async () => {
  doc = await dereference(structuredClone((await api.get("/openapi.json")).body));
  const userId = await createUser(100_000);
  const productId = await createProduct(1_000, 50);
  const couponId = await createCoupon({ quantity: 100 });
  const pathCoupon = await createCoupon({ quantity: 100 });
  const futureCoupon = await createCoupon({ quantity: 100, startsAt: new Date(Date.now() + 86_400_000).toISOString() });
  const toCancel = (await placeOrder(userId, [[productId, 1]])).body.data.orderId;
  const toPay = (await placeOrder(userId, [[productId, 2]])).body.data.orderId;
  const deadLetterId = (await env.DB.prepare(
    "INSERT INTO dead_letters (event_id, type, payload, attempts, created_at) VALUES (?, 'order.completed', ?, 5, ?) RETURNING id",
  )
    .bind(crypto.randomUUID(), JSON.stringify({ any: "payload" }), Date.now())
    .first<{ id: number }>())!.id;
  const admin = adminHeaders;
  fixtures = {
    "POST /api/v1/points/charge": () => ({ path: "/api/v1/points/charge", json: { userId, amount: 1_000 }, status: 200 }),
    "GET /api/v1/points": () => ({ path: `/api/v1/points?userId=${userId}`, status: 200 }),
    "GET /api/v1/points/history": () => ({ path: `/api/v1/points/history?userId=${userId}&limit=5`, status: 200 }),
    "GET /api/v1/products/top": () => ({ path: "/api/v1/products/top?size=5", status: 200 }),
    "GET /api/v1/products/best": () => ({ path: "/api/v1/products/best", status: 200 }),
    "GET /api/v1/products": () => ({ path: "/api/v1/products?page=0&size=5", status: 200 }),
    "GET /api/v1/products/{productId}": () => ({ path: `/api/v1/products/${productId}`, status: 200 }),
    "POST /api/v1/coupons/issue": () => ({ path: "/api/v1/coupons/issue", json: { userId, couponId }, status: 201 }),
    "POST /api/v1/coupons/{couponId}/issue": () => ({ path: `/api/v1/coupons/${pathCoupon}/issue`, json: { userId }, status: 201 }),
    "GET /api/v1/coupons": () => ({ path: `/api/v1/coupons?userId=${userId}`, status: 200 }),
    "GET /api/v1/coupons/{couponId}": () => ({ path: `/api/v1/coupons/${couponId}`, status: 200 }),
    "POST /api/v1/admin/users": () => ({
      path: "/api/v1/admin/users",
      json: { name: "contract", initialBalance: 10 },
      headers: admin,
      status: 201,
    }),
    "POST /api/v1/admin/products": () => ({
      path: "/api/v1/admin/products",
      json: { name: "contract", description: "d", price: 10, stock: 1 },
      headers: admin,
      status: 201,
    }),
    "POST /api/v1/admin/coupons": () => ({
      path: "/api/v1/admin/coupons",
      json: {
        name: "c",
        discountType: "RATE",
        discountValue: 10,
        quantity: 5,
        startsAt: "2026-01-01T00:00:00+09:00",
        endsAt: "2027-06-01T00:00:00+09:00",
        validDays: 7,
      },
      headers: admin,
      status: 201,
    }),
    "GET /api/v1/admin/coupons": () => ({ path: "/api/v1/admin/coupons?limit=5", headers: admin, status: 200 }),
    "GET /api/v1/admin/products": () => ({ path: "/api/v1/admin/products?limit=5", headers: admin, status: 200 }),
    "PATCH /api/v1/admin/coupons/{couponId}": () => ({
      path: `/api/v1/admin/coupons/${couponId}`,
      json: { quantity: 150 },
      headers: admin,
      status: 200,
    }),
    "PUT /api/v1/admin/coupons/{couponId}/shards": () => ({
      path: `/api/v1/admin/coupons/${futureCoupon}/shards`,
      json: { shards: 4 },
      headers: admin,
      status: 200,
    }),
    "GET /api/v1/admin/coupons/{couponId}/shards": () => ({
      path: `/api/v1/admin/coupons/${futureCoupon}/shards`,
      headers: admin,
      status: 200,
    }),
    "GET /api/v1/admin/coupons/{couponId}/issuances": () => ({
      path: `/api/v1/admin/coupons/${couponId}/issuances?bucketSeconds=10`,
      headers: admin,
      status: 200,
    }),
    "PATCH /api/v1/admin/products/{productId}/stock": () => ({
      path: `/api/v1/admin/products/${productId}/stock`,
      json: { delta: 5 },
      headers: admin,
      status: 200,
    }),
    "PUT /api/v1/admin/products/{productId}/stock-shards": () => ({
      path: `/api/v1/admin/products/${productId}/stock-shards`,
      json: { stockShards: 2 },
      headers: admin,
      status: 200,
    }),
    "GET /api/v1/admin/products/{productId}/stock-shards": () => ({
      path: `/api/v1/admin/products/${productId}/stock-shards`,
      headers: admin,
      status: 200,
    }),
    "GET /api/v1/admin/stats": () => ({ path: "/api/v1/admin/stats", headers: admin, status: 200 }),
    "GET /api/v1/admin/health": () => ({ path: "/api/v1/admin/health", headers: admin, status: 200 }),
    "GET /api/v1/admin/dead-letters": () => ({ path: "/api/v1/admin/dead-letters?limit=10", headers: admin, status: 200 }),
    "GET /api/v1/admin/d1-groups": () => ({ path: "/api/v1/admin/d1-groups", headers: admin, status: 200 }),
    "POST /api/v1/admin/dead-letters/{deadLetterId}/replay": () => ({
      path: `/api/v1/admin/dead-letters/${deadLetterId}/replay`,
      json: {},
      headers: admin,
      status: 200,
    }),
    "POST /api/v1/orders": () => ({ path: "/api/v1/orders", json: { userId, orderProducts: [{ productId, quantity: 1 }] }, status: 201 }),
    "GET /api/v1/orders": () => ({ path: `/api/v1/orders?userId=${userId}&limit=5`, status: 200 }),
    "GET /api/v1/orders/{orderId}": () => ({ path: `/api/v1/orders/${toPay}?userId=${userId}`, status: 200 }),
    "POST /api/v1/orders/{orderId}/cancel": () => ({ path: `/api/v1/orders/${toCancel}/cancel`, json: { userId }, status: 200 }),
    "POST /api/v1/points/use": () => ({ path: "/api/v1/points/use", json: { userId, orderId: toPay }, status: 200 }),
  };
});

const operations = () =>
  Object.entries<any>(doc.paths).flatMap(([path, item]) =>
    Object.entries<any>(item).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), op })),
  );

/** Status declared, body valid against its schema, documented headers present. */
function checkAgainstDocument(key: string, op: any, res: ApiResponse) {
  const declared = op.responses[String(res.status)];
  expect(declared, `${key}: answered ${res.status}, declared ${Object.keys(op.responses)}: ${JSON.stringify(res.body)}`).toBeDefined();
  const schema = declared.content?.["application/json"]?.schema;
  if (schema) {
    const result = new Validator(schema, "2020-12", false).validate(res.body);
    expect(result.valid, `${key} ${res.status}: ${JSON.stringify(result.errors.slice(0, 3))} in ${JSON.stringify(res.body)}`).toBe(true);
  } else {
    expect(res.body, `${key} ${res.status}: no body declared`).toBeNull();
  }
  for (const name of Object.keys(declared.headers ?? {})) {
    if (["X-Request-Id", "Server-Timing", "Cache-Control"].includes(name))
      expect(res.headers.get(name), `${key} ${res.status} header ${name}`).not.toBeNull();
  }
}

describe("contract: every documented operation", () => {
  it("has a request here (a new route without one fails)", () => {
    expect(
      operations()
        .map((o) => o.key)
        .sort(),
    ).toEqual(Object.keys(fixtures).sort());
  });

  it("answers its happy path with a declared status and a body valid against the declared schema", async () => {
    for (const { key, method, op } of operations()) {
      const req = fixtures[key]!();
      const res = await call(method, req.path, { json: req.json, headers: req.headers });
      expect(res.status, `${key}: ${JSON.stringify(res.body)}`).toBe(req.status);
      checkAgainstDocument(key, op, res);
      // Coupon issuance and a restock write D1 inside their object (its own primary session), so the
      // request's session never opened: no bookmark. The reads that follow start at the primary anyway
      // (the owner's coupons) or see the bumped cache generation (the product). The group-commit
      // counters are the isolate's memory: no D1 at all.
      const d1InObject = (key.includes("/coupons/") && key.endsWith("/issue")) || key.endsWith("/stock");
      const noD1 = key.endsWith("/d1-groups");
      if (res.status < 300 && !d1InObject && !noD1)
        expect(res.headers.get("x-d1-bookmark") ?? `none on ${key}`, key).toMatch(/^[0-9a-f]{8}-/);
    }
  });

  it("answers 401 as declared on every user route once JWT_SECRET is set, and public reads stay open", async () => {
    const secured = testApp({ JWT_SECRET });
    for (const { key, method, op } of operations()) {
      if (key.includes("/admin/")) continue;
      const req = fixtures[key]!();
      const res = await secured.call(method, req.path, { json: req.json });
      const publicRead = method === "GET" && (key.startsWith("GET /api/v1/products") || key === "GET /api/v1/coupons/{couponId}");
      expect(res.status, key).toBe(publicRead ? 200 : 401);
      checkAgainstDocument(key, op, res);
    }
  });

  it("answers declared errors with the error envelope: unknown ids, bad input, 304 revalidation, admin without a token", async () => {
    const byKey = Object.fromEntries(operations().map((o) => [o.key, o.op]));
    const sharded = (await api.post("/api/v1/admin/products", { name: "sharded", price: 10, stock: 9, stockShards: 3 }, adminHeaders)).body
      .data.productId;
    const cases: [string, string, string, unknown?, Record<string, string>?][] = [
      ["GET /api/v1/products/{productId}", "GET", "/api/v1/products/987600"],
      ["GET /api/v1/products", "GET", "/api/v1/products?size=0"],
      ["GET /api/v1/points", "GET", "/api/v1/points?userId=987601"],
      ["GET /api/v1/coupons/{couponId}", "GET", "/api/v1/coupons/987603"],
      ["GET /api/v1/orders", "GET", "/api/v1/orders?userId=1&cursor=nope"],
      ["GET /api/v1/orders", "GET", "/api/v1/orders?userId=987604"],
      ["POST /api/v1/points/charge", "POST", "/api/v1/points/charge", { userId: 1, amount: 2_000_000 }],
      ["POST /api/v1/orders", "POST", "/api/v1/orders", { userId: 1, orderProducts: [] }],
      ["POST /api/v1/admin/users", "POST", "/api/v1/admin/users", { name: "x" }, {}],
      [
        "PUT /api/v1/admin/products/{productId}/stock-shards",
        "PUT",
        `/api/v1/admin/products/${sharded}/stock-shards`,
        { stockShards: 2 },
        adminHeaders,
      ],
      ["GET /api/v1/admin/products/{productId}/stock-shards", "GET", "/api/v1/admin/products/987602/stock-shards", undefined, adminHeaders],
      ["GET /api/v1/admin/d1-groups", "GET", "/api/v1/admin/d1-groups", undefined, {}],
      ["GET /api/v1/admin/coupons/{couponId}/issuances", "GET", "/api/v1/admin/coupons/987605/issuances", undefined, adminHeaders],
      [
        "GET /api/v1/admin/coupons/{couponId}/issuances",
        "GET",
        "/api/v1/admin/coupons/1/issuances?bucketSeconds=7",
        undefined,
        adminHeaders,
      ],
      ["GET /api/v1/points", "GET", "/api/v1/points?userId=1", undefined, { "x-d1-bookmark": "not-a-bookmark" }],
    ];
    for (const [key, method, path, json, headers] of cases) {
      const res = await call(method, path, { json, headers });
      expect(res.status, key).toBeGreaterThanOrEqual(400);
      checkAgainstDocument(key, byKey[key], res);
    }
    const first = await api.get("/api/v1/products?page=0&size=2");
    const revalidated = await api.get("/api/v1/products?page=0&size=2", { "if-none-match": first.headers.get("etag")! });
    expect(revalidated.status).toBe(304);
    checkAgainstDocument("GET /api/v1/products", byKey["GET /api/v1/products"], revalidated);
  });
});
