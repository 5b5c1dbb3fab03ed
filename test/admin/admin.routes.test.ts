import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { adminHeaders, api, errorCode } from "../support/http";

const future = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();

describe("admin authentication", () => {
  const routes: [string, unknown][] = [
    ["/api/v1/admin/users", { name: "x" }],
    ["/api/v1/admin/products", { name: "x", price: 1, stock: 1 }],
    ["/api/v1/admin/coupons", { name: "x", discountType: "RATE", discountValue: 10, quantity: 1, startsAt: future(0), endsAt: future(1) }],
  ];

  it.each(routes)("%s: no token is 401, a wrong token is 403, and nothing is created", async (path, body) => {
    const before = await env.DB.prepare(
      "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM products) + (SELECT count(*) FROM coupons) AS n",
    ).first("n");
    const none = await api.post(path, body);
    expect(none.status).toBe(401);
    expect(errorCode(none)).toBe("UNAUTHORIZED");
    const wrong = await api.post(path, body, { authorization: "Bearer nope" });
    expect(wrong.status).toBe(403);
    expect(errorCode(wrong)).toBe("FORBIDDEN");
    const basic = await api.post(path, body, { authorization: "Basic dGVzdA==" });
    expect(basic.status).toBe(401);
    const after = await env.DB.prepare(
      "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM products) + (SELECT count(*) FROM coupons) AS n",
    ).first("n");
    expect(after).toBe(before);
  });
});

describe("POST /api/v1/admin/users", () => {
  it("creates a user with a balance row and a CHARGE history row for the initial balance", async () => {
    const res = await api.post("/api/v1/admin/users", { name: "kim", initialBalance: 5_000 }, adminHeaders);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ code: 201, message: "리소스가 성공적으로 생성되었습니다." });
    const userId = res.body.data.userId;
    expect((await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance).toBe(5_000);
    const rows = await env.DB.prepare("SELECT type, amount FROM point_history WHERE user_id = ?").bind(userId).all();
    expect(rows.results).toEqual([{ type: "CHARGE", amount: 5_000 }]);
  });

  it("creates a zero-balance user with no history", async () => {
    const res = await api.post("/api/v1/admin/users", { name: "lee" }, adminHeaders);
    const userId = res.body.data.userId;
    expect((await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance).toBe(0);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM point_history WHERE user_id = ?").bind(userId).first("n")).toBe(0);
  });

  it("refuses an initial balance above 5,000,000 or an empty name", async () => {
    for (const body of [{ name: "a", initialBalance: 5_000_001 }, { name: "" }, { name: "a", initialBalance: -1 }]) {
      const res = await api.post("/api/v1/admin/users", body, adminHeaders);
      expect(res.status).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
  });
});

describe("POST /api/v1/admin/products", () => {
  it("creates a product visible in the catalogue", async () => {
    const res = await api.post("/api/v1/admin/products", { name: "lamp", description: "warm", price: 12_000, stock: 7 }, adminHeaders);
    expect(res.status).toBe(201);
    const detail = await api.get(`/api/v1/products/${res.body.data.productId}`);
    expect(detail.body.data).toMatchObject({ productName: "lamp", description: "warm", price: 12_000, stock: 7 });
  });

  it("refuses a zero price or negative stock", async () => {
    for (const body of [
      { name: "a", price: 0, stock: 1 },
      { name: "a", price: 1, stock: -1 },
      { name: "a", price: 1.5, stock: 1 },
    ]) {
      const res = await api.post("/api/v1/admin/products", body, adminHeaders);
      expect(res.status).toBe(400);
    }
  });
});

describe("POST /api/v1/admin/coupons", () => {
  it("creates a coupon with default validity of 7 days", async () => {
    const res = await api.post(
      "/api/v1/admin/coupons",
      {
        name: "10%",
        discountType: "RATE",
        discountValue: 10,
        quantity: 100,
        startsAt: "2026-01-01T00:00:00+09:00",
        endsAt: "2027-01-01T00:00:00+09:00",
      },
      adminHeaders,
    );
    expect(res.status).toBe(201);
    const row = await env.DB.prepare("SELECT * FROM coupons WHERE id = ?").bind(res.body.data.couponId).first<any>();
    expect(row).toMatchObject({ discount_type: "RATE", discount_value: 10, quantity: 100, issued_quantity: 0, valid_days: 7 });
    expect(row.starts_at).toBe(Date.parse("2025-12-31T15:00:00Z"));
  });

  it.each([
    [{ discountType: "RATE", discountValue: 101 }],
    [{ discountType: "RATE", discountValue: 0 }],
    [{ discountType: "AMOUNT", discountValue: -5 }],
    [{ discountType: "PERCENT", discountValue: 5 }],
    [{ startsAt: future(2), endsAt: future(1) }],
    [{ startsAt: "2026-01-01T00:00:00" }],
    [{ quantity: 0 }, "INVALID_QUANTITY"],
    [{ validDays: 0 }],
  ])("refuses %j with 400 and creates nothing", async (patch, code = "VALIDATION_FAILED") => {
    const before = await env.DB.prepare("SELECT count(*) AS n FROM coupons").first("n");
    const body = { name: "c", discountType: "AMOUNT", discountValue: 1000, quantity: 10, startsAt: future(0), endsAt: future(5), ...patch };
    const res = await api.post("/api/v1/admin/coupons", body, adminHeaders);
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe(code);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM coupons").first("n")).toBe(before);
  });
});
