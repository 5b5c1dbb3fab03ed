import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { ADMIN_TOKEN, adminHeaders, createCoupon, errorCode } from "../support/http";
import { bearer, JWT_SECRET, testApp, tokenFor } from "../support/secure-app";

// Both write limits at 1 a minute: admin writes must never be counted against them.
const app = testApp({
  JWT_SECRET,
  RATE_LIMIT_WRITES_PER_MINUTE: "1",
  RATE_LIMIT_IP_WRITES_PER_MINUTE: "1",
  WRITES_PER_USER: env.TEST_WRITES_1,
  WRITES_PER_IP: env.TEST_WRITES_1,
});

async function counts() {
  return env.DB.prepare(
    "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM products) AS products, (SELECT count(*) FROM coupons) AS coupons, (SELECT coalesce(sum(quantity), 0) FROM coupons) AS quantity",
  ).first();
}

/** Every admin route, with a body that would succeed given the right token. */
function adminCalls(couponId: number): [method: string, path: string, json?: unknown][] {
  const now = Date.now();
  return [
    ["POST", "/api/v1/admin/users", { name: "mallory", initialBalance: 5_000_000 }],
    ["POST", "/api/v1/admin/products", { name: "free", price: 1, stock: 1_000 }],
    [
      "POST",
      "/api/v1/admin/coupons",
      {
        name: "c",
        discountType: "RATE",
        discountValue: 100,
        quantity: 5,
        startsAt: new Date(now).toISOString(),
        endsAt: new Date(now + 86_400_000).toISOString(),
      },
    ],
    ["PATCH", `/api/v1/admin/coupons/${couponId}`, { quantity: 500 }],
    ["GET", "/api/v1/admin/dead-letters"],
    ["POST", "/api/v1/admin/dead-letters/1/replay", {}],
  ];
}

describe("admin routes", () => {
  it("answers 401 with a Bearer challenge without a token, on every admin route, and changes nothing", async () => {
    const couponId = await createCoupon();
    const before = await counts();
    for (const [method, path, json] of adminCalls(couponId)) {
      const res = await app.call(method, path, { json });
      expect(res.status, path).toBe(401);
      expect(errorCode(res)).toBe("UNAUTHORIZED");
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    expect(await counts()).toEqual(before);
  });

  it("answers 403 for a wrong admin token, a near miss, or a user's valid JWT, and changes nothing", async () => {
    const couponId = await createCoupon();
    const before = await counts();
    const wrong = [
      { authorization: "Bearer not-the-admin-token" },
      { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}X` },
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      bearer(await tokenFor(1)),
    ];
    for (const headers of wrong) {
      for (const [method, path, json] of adminCalls(couponId)) {
        const res = await app.call(method, path, { json, headers });
        expect(res.status, `${path} ${headers.authorization}`).toBe(403);
        expect(errorCode(res)).toBe("FORBIDDEN");
      }
    }
    expect(await counts()).toEqual(before);
  });

  it("serves the admin token without a user JWT, and is neither rate limited nor idempotency-keyed", async () => {
    const before = (await counts()) as { users: number };
    for (let i = 0; i < 3; i++) {
      const res = await app.post("/api/v1/admin/users", { name: "ops" }, { ...adminHeaders, "idempotency-key": "same" });
      expect(res.status).toBe(201);
      expect(res.headers.get("idempotent-replayed")).toBeNull();
    }
    expect(((await counts()) as { users: number }).users).toBe(before.users + 3);
  });

  it("is off (403) when ADMIN_TOKEN is unset, even with a token", async () => {
    const closed = testApp({ ADMIN_TOKEN: "" });
    const res = await closed.post("/api/v1/admin/users", { name: "x" }, adminHeaders);
    expect(res.status).toBe(403);
    expect(errorCode(res)).toBe("FORBIDDEN");
  });
});
