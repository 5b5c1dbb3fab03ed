import { CouponIssuedV1 } from "../../src/events/event.schemas";
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { adminHeaders, api, type ApiResponse, createCoupon, createUser, errorCode } from "../support/http";
import { d1CostOf } from "../../src/shared/hops";
import { d1State, issue, issuerOf } from "./support";

const DAY = 86_400_000;

describe("POST /api/v1/coupons/issue", () => {
  it("issues the coupon: 201 with the user coupon id, a D1 row, an outbox event and the DO's record", async () => {
    const userId = await createUser();
    const couponId = await createCoupon({ quantity: 5 });
    const res = await issue(couponId, userId);
    expect(res.status).toBe(201);
    expect(res.body.code).toBe(201);
    expect(res.body.message).toBe("리소스가 성공적으로 생성되었습니다.");
    const data = res.body.data;
    expect(data).toMatchObject({ couponId, userId });
    expect(data.userCouponId).toEqual(expect.any(Number));
    const row = await env.DB.prepare("SELECT id, issued_at, expires_at, used_at FROM user_coupons WHERE user_id = ? AND coupon_id = ?")
      .bind(userId, couponId)
      .first<{ id: number; issued_at: number; expires_at: number; used_at: number | null }>();
    expect(row?.id).toBe(data.userCouponId);
    expect(new Date(row!.expires_at).toISOString()).toBe(data.expiresAt);
    expect(await d1State(couponId)).toEqual({ users: [userId], issuedQuantity: 1, quantity: 5, events: 1 });
    const event = await env.DB.prepare("SELECT event_id, payload, status FROM outbox WHERE event_id = ?")
      .bind(`coupon.issued:${couponId}:${userId}`)
      .first<{ payload: string; status: string }>();
    expect(event?.status).toBe("PENDING");
    // The payload is the versioned CouponIssuedV1 event the relay publishes.
    const payload = CouponIssuedV1.parse(JSON.parse(event!.payload));
    expect(payload).toMatchObject({
      eventId: `coupon.issued:${couponId}:${userId}`,
      version: 1,
      issuance: { userCouponId: data.userCouponId, couponId, userId, expiresAt: data.expiresAt },
    });
    const state = await issuerOf(couponId).state();
    expect(state).toMatchObject({ couponId, quantity: 5, issued: 1, users: [userId], unsynced: 0 });
  });

  it("also works as POST /coupons/{couponId}/issue", async () => {
    const userId = await createUser();
    const couponId = await createCoupon();
    const res = await api.post(`/api/v1/coupons/${couponId}/issue`, { userId });
    expect(res.status).toBe(201);
    expect(res.body.data).toMatchObject({ couponId, userId });
    expect(errorCode(await api.post(`/api/v1/coupons/${couponId}/issue`, { userId }))).toBe("COUPON_ALREADY_ISSUED");
  });

  it("answers 409 COUPON_ALREADY_ISSUED to a second request and keeps one row", async () => {
    const userId = await createUser();
    const couponId = await createCoupon();
    expect((await issue(couponId, userId)).status).toBe(201);
    const again = await issue(couponId, userId);
    expect(again.status).toBe(409);
    expect(errorCode(again)).toBe("COUPON_ALREADY_ISSUED");
    expect((await d1State(couponId)).users).toEqual([userId]);
  });

  it("answers 409 COUPON_SOLD_OUT once the quantity is gone", async () => {
    const [a, b] = [await createUser(), await createUser()];
    const couponId = await createCoupon({ quantity: 1 });
    expect((await issue(couponId, a)).status).toBe(201);
    const res = await issue(couponId, b);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("COUPON_SOLD_OUT");
    expect(res.body.detail).toBe("쿠폰이 모두 소진되었습니다.");
  });

  it("answers 409 COUPON_NOT_ISSUABLE before the window opens and after it closes", async () => {
    const userId = await createUser();
    const future = await createCoupon({
      startsAt: new Date(Date.now() + DAY).toISOString(),
      endsAt: new Date(Date.now() + 2 * DAY).toISOString(),
    });
    const past = await createCoupon({
      startsAt: new Date(Date.now() - 2 * DAY).toISOString(),
      endsAt: new Date(Date.now() - DAY).toISOString(),
    });
    for (const couponId of [future, past]) {
      const res = await issue(couponId, userId);
      expect(res.status).toBe(409);
      expect(errorCode(res)).toBe("COUPON_NOT_ISSUABLE");
      expect(await d1State(couponId)).toMatchObject({ users: [], issuedQuantity: 0 });
      expect((await issuerOf(couponId).state()).issued).toBe(0);
    }
  });

  it("expires a user coupon validDays after issue when the coupon ends later", async () => {
    const userId = await createUser();
    const couponId = await createCoupon({ validDays: 3, endsAt: new Date(Date.now() + 30 * DAY).toISOString() });
    const res = await issue(couponId, userId);
    const row = await env.DB.prepare("SELECT issued_at, expires_at FROM user_coupons WHERE id = ?")
      .bind(res.body.data.userCouponId)
      .first<{ issued_at: number; expires_at: number }>();
    expect(row!.expires_at - row!.issued_at).toBe(3 * DAY);
    expect(Date.parse(res.body.data.expiresAt)).toBe(row!.expires_at);
  });

  it("expires a user coupon at the coupon end when that comes before issue + validDays", async () => {
    const userId = await createUser();
    const endsAt = new Date(Date.now() + 2 * DAY);
    const couponId = await createCoupon({ validDays: 7, endsAt: endsAt.toISOString() });
    const res = await issue(couponId, userId);
    expect(res.status).toBe(201);
    expect(res.body.data.expiresAt).toBe(endsAt.toISOString());
  });

  it("answers 404 for an unknown user without issuing (the unit goes back) and for an unknown coupon without storage", async () => {
    const couponId = await createCoupon({ quantity: 1 });
    const unknownUser = await issue(couponId, 987_654);
    expect(unknownUser.status).toBe(404);
    expect(errorCode(unknownUser)).toBe("USER_NOT_FOUND");
    expect(await issuerOf(couponId).state()).toMatchObject({ issued: 0, users: [], unsynced: 0 });
    expect(await d1State(couponId)).toMatchObject({ users: [], issuedQuantity: 0, events: 0 });
    // The one unit is still there for a real user.
    const userId = await createUser();
    expect((await issue(couponId, userId)).status).toBe(201);
    const unknownCoupon = await issue(876_543, userId);
    expect(unknownCoupon.status).toBe(404);
    expect(errorCode(unknownCoupon)).toBe("COUPON_NOT_FOUND");
    expect(errorCode(await api.post("/api/v1/coupons/876543/issue", { userId }))).toBe("COUPON_NOT_FOUND");
    expect(await issuerOf(876_543).state()).toMatchObject({ couponId: null });
    expect(await runInDurableObject(issuerOf(876_543), (_i, state) => state.storage.sql.databaseSize)).toBeLessThan(16_384);
  });

  it("refuses a sold-out coupon before looking the user up: an unknown user hears COUPON_SOLD_OUT (docs/ARCHITECTURE.md §3: coupon issuance)", async () => {
    const couponId = await createCoupon({ quantity: 1 });
    expect((await issue(couponId, await createUser())).status).toBe(201);
    const res = await issue(couponId, 987_655);
    expect(errorCode(res)).toBe("COUPON_SOLD_OUT");
    expect(await d1State(couponId)).toMatchObject({ issuedQuantity: 1 });
  });

  it("answers 400 with the dedicated code for invalid ids and VALIDATION_FAILED for shape problems", async () => {
    const userId = await createUser();
    const couponId = await createCoupon();
    for (const bad of [0, -1, 1.5, "1", null, 2 ** 53]) {
      expect(errorCode(await issue(couponId, bad as number)), `userId ${bad}`).toBe("INVALID_USER_ID");
      expect(errorCode(await issue(bad as number, userId)), `couponId ${bad}`).toBe("INVALID_COUPON_ID");
    }
    for (const bad of ["0", "abc", "1.5", "-3"]) {
      const res = await api.post(`/api/v1/coupons/${bad}/issue`, { userId });
      expect(res.status, bad).toBe(400);
      expect(errorCode(res), bad).toBe("INVALID_COUPON_ID");
    }
    const extra = await api.post("/api/v1/coupons/issue", { userId, couponId, quantity: 2 });
    expect(extra.status).toBe(400);
    expect(errorCode(extra)).toBe("VALIDATION_FAILED");
    const extraPath = await api.post(`/api/v1/coupons/${couponId}/issue`, { userId, couponId });
    expect(errorCode(extraPath)).toBe("VALIDATION_FAILED");
    const missing = await api.post("/api/v1/coupons/issue", { userId });
    expect(errorCode(missing)).toBe("VALIDATION_FAILED");
    expect((await issuerOf(couponId).state()).issued).toBe(0);
  });
});

describe("GET /api/v1/coupons", () => {
  it("lists the user's coupons by id with AVAILABLE, EXPIRED and USED", async () => {
    const userId = await createUser();
    const [c1, c2, c3] = [
      await createCoupon({ name: "first", discountType: "RATE", discountValue: 10 }),
      await createCoupon({ name: "second" }),
      await createCoupon({ name: "third", discountValue: 500 }),
    ];
    const ids: number[] = [];
    for (const c of [c1, c2, c3]) ids.push((await issue(c, userId)).body.data.userCouponId);
    await env.DB.prepare("UPDATE user_coupons SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 1_000, ids[1])
      .run();
    const userBalanceOrder = await env.DB.prepare(
      "INSERT INTO orders (user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at) VALUES (?, ?, 'NOT_PAID', 1000, 500, 500, ?, ?, ?) RETURNING id",
    )
      .bind(userId, ids[2], Date.now(), Date.now() + 900_000, Date.now())
      .first<number>("id");
    const usedAt = Date.now();
    await env.DB.prepare("UPDATE user_coupons SET used_at = ?, order_id = ? WHERE id = ?").bind(usedAt, userBalanceOrder, ids[2]).run();

    const res = await api.get(`/api/v1/coupons?userId=${userId}`);
    expect(res.status).toBe(200);
    expect(res.body.data.userId).toBe(userId);
    const list = res.body.data.coupons;
    expect(list.map((c: any) => c.userCouponId)).toEqual([...ids].sort((a, b) => a - b));
    expect(list.map((c: any) => [c.couponId, c.couponTitle, c.status])).toEqual([
      [c1, "first", "AVAILABLE"],
      [c2, "second", "EXPIRED"],
      [c3, "third", "USED"],
    ]);
    expect(list[0]).toMatchObject({ discountType: "RATE", discountValue: 10, usedAt: null });
    expect(list[2].usedAt).toBe(new Date(usedAt).toISOString());
    expect(Date.parse(list[0].issuedAt)).not.toBeNaN();
  });

  it("returns an empty list for a user without coupons, 404 for an unknown user, 400 for a bad id", async () => {
    const userId = await createUser();
    expect((await api.get(`/api/v1/coupons?userId=${userId}`)).body.data).toEqual({ userId, coupons: [], nextCursor: null });
    expect(errorCode(await api.get("/api/v1/coupons?userId=999888"))).toBe("USER_NOT_FOUND");
    expect(errorCode(await api.get("/api/v1/coupons?userId=abc"))).toBe("INVALID_USER_ID");
    expect(errorCode(await api.get(`/api/v1/coupons?userId=${userId}&extra=1`))).toBe("VALIDATION_FAILED");
  });
});

describe("GET /coupons pages", () => {
  it("pages through 250 coupons 100 at a time, oldest first, nothing repeated or skipped, each page reading its own rows", async () => {
    const userId = await createUser();
    const coupon = await env.DB.prepare(
      "INSERT INTO coupons (name, discount_type, discount_value, quantity, starts_at, ends_at, created_at) VALUES ('paged', 'AMOUNT', 100, 1000, 0, ?1, 0) RETURNING id",
    )
      .bind(Date.now() + 86_400_000)
      .first<{ id: number }>();
    // 250 coupons of one user need 250 coupons (one per user and coupon): clone the coupon row.
    await env.DB.prepare(
      `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 249)
       INSERT INTO coupons (name, discount_type, discount_value, quantity, starts_at, ends_at, created_at) SELECT 'paged', 'AMOUNT', 100, 1000, 0, ?1, 0 FROM seq`,
    )
      .bind(Date.now() + 86_400_000)
      .run();
    await env.DB.prepare(
      "INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) SELECT ?1, id, 0, ?2 FROM coupons WHERE name = 'paged' AND id >= ?3 ORDER BY id",
    )
      .bind(userId, Date.now() + 86_400_000, coupon!.id)
      .run();
    const ids: number[] = [];
    const pages: number[] = [];
    let cursor: string | null = null;
    do {
      const res: ApiResponse = await api.get(`/api/v1/coupons?userId=${userId}${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status).toBe(200);
      pages.push(res.body.data.coupons.length);
      ids.push(...res.body.data.coupons.map((c: { userCouponId: number }) => c.userCouponId));
      // A page of 100 reads its rows (+1 to know more follow), their coupons and the user: never the other pages.
      expect(d1CostOf(res.headers.get("server-timing")).rowsRead).toBeLessThanOrEqual(2 * 101 + 2);
      cursor = res.body.data.nextCursor;
    } while (cursor);
    expect(pages).toEqual([100, 100, 50]);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(250);
    const small = await api.get(`/api/v1/coupons?userId=${userId}&limit=3`);
    expect(small.body.data.coupons.map((c: { userCouponId: number }) => c.userCouponId)).toEqual(ids.slice(0, 3));
    expect(errorCode(await api.get(`/api/v1/coupons?userId=${userId}&limit=101`))).toBe("VALIDATION_FAILED");
    expect(errorCode(await api.get(`/api/v1/coupons?userId=${userId}&cursor=bm90LWEtY3Vyc29y`))).toBe("VALIDATION_FAILED");
  });
});

describe("admin coupons", () => {
  it("makes a freshly created coupon issuable at once", async () => {
    const couponId = await createCoupon({ quantity: 1 });
    expect((await issue(couponId, await createUser())).status).toBe(201);
  });

  it("PATCH /admin/coupons/{id} changes quantity through the DO and in D1, never below the issued count", async () => {
    const couponId = await createCoupon({ quantity: 2 });
    const [a, b, c] = [await createUser(), await createUser(), await createUser()];
    expect((await issue(couponId, a)).status).toBe(201);
    expect((await issue(couponId, b)).status).toBe(201);
    expect(errorCode(await issue(couponId, c))).toBe("COUPON_SOLD_OUT");

    const below = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 1 }, adminHeaders);
    expect(below.status).toBe(409);
    expect(errorCode(below)).toBe("COUPON_QUANTITY_BELOW_ISSUED");

    const raised = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 3 }, adminHeaders);
    expect(raised.status).toBe(200);
    expect(raised.body.data).toEqual({ couponId, quantity: 3, issuedQuantity: 2 });
    expect(await d1State(couponId)).toMatchObject({ quantity: 3, issuedQuantity: 2 });
    expect((await issue(couponId, c)).status).toBe(201);
    expect((await issuerOf(couponId).state()).issued).toBe(3);

    // Shrinking to exactly the issued count is allowed.
    expect((await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 3 }, adminHeaders)).status).toBe(200);
  });

  it("PATCH refuses unknown coupons, bad bodies and missing tokens", async () => {
    const couponId = await createCoupon();
    expect(errorCode(await api.patch("/api/v1/admin/coupons/765432", { quantity: 3 }, adminHeaders))).toBe("COUPON_NOT_FOUND");
    expect(errorCode(await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 0 }, adminHeaders))).toBe("INVALID_QUANTITY");
    expect(errorCode(await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 3, x: 1 }, adminHeaders))).toBe("VALIDATION_FAILED");
    expect(errorCode(await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 3 }))).toBe("UNAUTHORIZED");
    expect((await d1State(couponId)).quantity).toBe(100);
  });
});

describe("OpenAPI", () => {
  it("documents the coupon routes and the admin quantity route", async () => {
    const res = await api.get("/openapi.json");
    expect(res.status).toBe(200);
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/coupons/issue",
        "/api/v1/coupons/{couponId}/issue",
        "/api/v1/coupons",
        "/api/v1/admin/coupons/{couponId}",
      ]),
    );
  });
});
