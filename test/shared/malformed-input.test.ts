import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { adminHeaders, call, createProduct, createUser, errorCode } from "../support/http";

/** Everything a malformed request could have changed. */
async function snapshot() {
  return env.DB.prepare(
    `SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM products) AS products,
            (SELECT count(*) FROM coupons) AS coupons, (SELECT count(*) FROM point_history) AS history,
            (SELECT coalesce(sum(balance), 0) FROM user_balances) AS balances,
            (SELECT coalesce(sum(stock), 0) FROM products) AS stock`,
  ).first();
}

type Case = [
  name: string,
  method: string,
  path: string,
  init: { body?: string; headers?: Record<string, string> },
  status: number,
  code?: string,
];

const json = (value: unknown) => ({ body: JSON.stringify(value), headers: { "content-type": "application/json" } });
const raw = (body: string, type = "application/json") => ({ body, headers: { "content-type": type } });

describe("malformed input answers 4xx in the envelope and changes nothing", () => {
  let userId = 0;
  let productId = 0;
  beforeAll(async () => {
    userId = await createUser(1_000);
    productId = await createProduct(1_000, 5);
  });

  const cases = (): Case[] => [
    ["malformed JSON", "POST", "/api/v1/points/charge", raw('{"userId": 1, "amount": '), 400, "VALIDATION_FAILED"],
    ["empty body", "POST", "/api/v1/points/charge", raw(""), 400, "VALIDATION_FAILED"],
    ["JSON array body", "POST", "/api/v1/points/charge", json([userId, 10]), 400, "VALIDATION_FAILED"],
    ["JSON null body", "POST", "/api/v1/points/charge", raw("null"), 400, "VALIDATION_FAILED"],
    [
      "text/plain content type",
      "POST",
      "/api/v1/points/charge",
      raw(JSON.stringify({ userId, amount: 10 }), "text/plain"),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    ],
    [
      "form content type",
      "POST",
      "/api/v1/points/charge",
      raw(`userId=${userId}&amount=10`, "application/x-www-form-urlencoded"),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    ],
    ["no content type", "POST", "/api/v1/points/charge", { body: JSON.stringify({ userId, amount: 10 }) }, 415, "UNSUPPORTED_MEDIA_TYPE"],
    ["userId as string", "POST", "/api/v1/points/charge", json({ userId: String(userId), amount: 10 }), 400, "INVALID_USER_ID"],
    ["userId 0", "POST", "/api/v1/points/charge", json({ userId: 0, amount: 10 }), 400, "INVALID_USER_ID"],
    ["userId negative", "POST", "/api/v1/points/charge", json({ userId: -1, amount: 10 }), 400, "INVALID_USER_ID"],
    ["userId fractional", "POST", "/api/v1/points/charge", json({ userId: 1.5, amount: 10 }), 400, "INVALID_USER_ID"],
    ["userId beyond 2^53", "POST", "/api/v1/points/charge", raw(`{"userId": 9007199254740993, "amount": 10}`), 400, "INVALID_USER_ID"],
    ["userId 1e400", "POST", "/api/v1/points/charge", raw(`{"userId": 1e400, "amount": 10}`), 400, "INVALID_USER_ID"],
    ["userId null", "POST", "/api/v1/points/charge", json({ userId: null, amount: 10 }), 400, "INVALID_USER_ID"],
    ["amount as string", "POST", "/api/v1/points/charge", json({ userId, amount: "10" }), 400, "INVALID_CHARGE_AMOUNT"],
    ["amount zero", "POST", "/api/v1/points/charge", json({ userId, amount: 0 }), 400, "INVALID_CHARGE_AMOUNT"],
    ["amount negative", "POST", "/api/v1/points/charge", json({ userId, amount: -100 }), 400, "INVALID_CHARGE_AMOUNT"],
    ["amount fractional", "POST", "/api/v1/points/charge", json({ userId, amount: 10.5 }), 400, "INVALID_CHARGE_AMOUNT"],
    [
      "amount beyond 2^53",
      "POST",
      "/api/v1/points/charge",
      raw(`{"userId": ${userId}, "amount": 9007199254740993}`),
      400,
      "INVALID_CHARGE_AMOUNT",
    ],
    ["amount above the cap", "POST", "/api/v1/points/charge", json({ userId, amount: 1_000_001 }), 409, "CHARGE_LIMIT_EXCEEDED"],
    ["missing amount", "POST", "/api/v1/points/charge", json({ userId }), 400, "VALIDATION_FAILED"],
    ["missing userId", "POST", "/api/v1/points/charge", json({ amount: 10 }), 400, "VALIDATION_FAILED"],
    ["extra field", "POST", "/api/v1/points/charge", json({ userId, amount: 10, admin: true }), 400, "VALIDATION_FAILED"],
    [
      "__proto__ field",
      "POST",
      "/api/v1/points/charge",
      raw(`{"userId": ${userId}, "amount": 10, "__proto__": {"x": 1}}`),
      400,
      "VALIDATION_FAILED",
    ],
    ["oversized body", "POST", "/api/v1/points/charge", json({ userId, amount: 10, pad: "x".repeat(70 * 1024) }), 413, "PAYLOAD_TOO_LARGE"],
    ["query userId 0", "GET", "/api/v1/points?userId=0", {}, 400, "INVALID_USER_ID"],
    ["query userId fractional", "GET", "/api/v1/points?userId=2.5", {}, 400, "INVALID_USER_ID"],
    ["query userId beyond 2^53", "GET", "/api/v1/points?userId=9007199254740993", {}, 400, "INVALID_USER_ID"],
    ["query userId twice", "GET", `/api/v1/points?userId=${userId}&userId=2`, {}, 400],
    ["query extra", "GET", `/api/v1/points?userId=${userId}&x=1`, {}, 400, "VALIDATION_FAILED"],
    ["history limit 0", "GET", `/api/v1/points/history?userId=${userId}&limit=0`, {}, 400, "VALIDATION_FAILED"],
    ["history huge cursor", "GET", `/api/v1/points/history?userId=${userId}&cursor=${"a".repeat(100)}`, {}, 400, "VALIDATION_FAILED"],
    ["products size 0", "GET", "/api/v1/products?size=0", {}, 400, "VALIDATION_FAILED"],
    ["products page negative", "GET", "/api/v1/products?page=-1", {}, 400, "VALIDATION_FAILED"],
    ["product id fractional", "GET", "/api/v1/products/1.5", {}, 400, "INVALID_PRODUCT_ID"],
    ["product id beyond 2^53", "GET", "/api/v1/products/9007199254740993", {}, 400, "INVALID_PRODUCT_ID"],
    [
      "admin product price string",
      "POST",
      "/api/v1/admin/products",
      { ...json({ name: "x", price: "1", stock: 1 }), headers: { ...json({}).headers, ...adminHeaders } },
      400,
      "VALIDATION_FAILED",
    ],
    [
      "admin product extra",
      "POST",
      "/api/v1/admin/products",
      { ...json({ name: "x", price: 1, stock: 1, id: 5 }), headers: { ...json({}).headers, ...adminHeaders } },
      400,
      "VALIDATION_FAILED",
    ],
    [
      "admin user malformed JSON",
      "POST",
      "/api/v1/admin/users",
      { body: "{", headers: { ...json({}).headers, ...adminHeaders } },
      400,
      "VALIDATION_FAILED",
    ],
    [
      "admin coupon oversized",
      "POST",
      "/api/v1/admin/coupons",
      { body: JSON.stringify({ name: "y".repeat(80_000) }), headers: { ...json({}).headers, ...adminHeaders } },
      413,
      "PAYLOAD_TOO_LARGE",
    ],
  ];

  it("covers every case in the table", async () => {
    const table = cases();
    expect(table.length).toBeGreaterThanOrEqual(40);
    const before = await snapshot();
    for (const [name, method, path, init, status, code] of table) {
      const res = await call(method, path, init);
      expect(res.status, name).toBe(status);
      const got = errorCode(res);
      if (code) expect(got, name).toBe(code);
      expect(JSON.stringify(res.body), name).not.toMatch(/at .*\.(ts|js):\d+/);
    }
    expect(await snapshot()).toEqual(before);
    expect(productId).toBeGreaterThan(0);
  });
});
