import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { JOBS } from "../../src/jobs";
import { PointsService } from "../../src/points/points.service";
import { PointsRepo } from "../../src/points/points.repo";
import { IDEMPOTENCY_TTL_MS, requestHash } from "../../src/shared/idempotency";
import { purgeExpiredIdempotencyKeys } from "../../src/shared/idempotency.job";
import { api, call, createCoupon, createUser, errorCode } from "../support/http";
import { pointsState, testApp } from "../support/secure-app";

const CHARGE = "/api/v1/points/charge";
const withKey = (key: string) => ({ "idempotency-key": key });
const keyRows = (userId: number) =>
  env.DB.prepare("SELECT key, status_code FROM idempotency_keys WHERE user_id = ? ORDER BY key")
    .bind(userId)
    .all()
    .then((r) => r.results);

afterEach(() => vi.restoreAllMocks());

describe("Idempotency-Key on POST /api/v1/points/charge", () => {
  it("replays the first response for a sequential retry without charging again", async () => {
    const userId = await createUser(1_000);
    const first = await api.post(CHARGE, { userId, amount: 700 }, withKey("charge-1"));
    const second = await api.post(CHARGE, { userId, amount: 700 }, withKey("charge-1"));
    expect(first.status).toBe(200);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(second.headers.get("x-request-id")).toBeTruthy();
    expect(await pointsState(userId)).toEqual({ balance: 1_700, history: 2 });
  });

  it("charges exactly once when 10 requests race with the same key, and all 10 answer the same", async () => {
    const userId = await createUser(0);
    const responses = await Promise.all(Array.from({ length: 10 }, () => api.post(CHARGE, { userId, amount: 1_000 }, withKey("race"))));
    for (const res of responses) {
      expect(res.status).toBe(200);
      expect(res.body).toEqual(responses[0]!.body);
    }
    expect(responses[0]!.body.data.balance).toBe(1_000);
    expect(responses.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(9);
    expect(await pointsState(userId)).toEqual({ balance: 1_000, history: 1 });
  });

  it("never applies a charge twice when the Worker dies after the commit: the retry after the lease replays it", async () => {
    const userId = await createUser(0);
    const t = Date.now();
    // "Applied, then failed": the batch commits, then the handler dies before anything else happens.
    const real = PointsRepo.prototype.charge;
    vi.spyOn(PointsRepo.prototype, "charge").mockImplementationOnce(async function (this: PointsRepo, ...args) {
      await real.apply(this, args);
      throw new Error("worker killed after commit");
    });
    const died = await testApp({}, { now: () => t }).post(CHARGE, { userId, amount: 300 }, withKey("crash"));
    expect(died.status).toBe(500);
    expect(await keyRows(userId)).toEqual([{ key: "crash", status_code: 200 }]);
    const retried = await testApp({}, { now: () => t + 121_000 }).post(CHARGE, { userId, amount: 300 }, withKey("crash"));
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    expect(retried.body.data).toEqual({ userId, balance: 300 });
    expect(await pointsState(userId)).toEqual({ balance: 300, history: 1 });
  });

  it("answers 409 IDEMPOTENCY_KEY_REUSED for the same key with another body or another route", async () => {
    const userId = await createUser(0);
    const couponId = await createCoupon();
    expect((await api.post(CHARGE, { userId, amount: 100 }, withKey("k"))).status).toBe(200);
    const otherBody = await api.post(CHARGE, { userId, amount: 200 }, withKey("k"));
    expect(otherBody.status).toBe(409);
    expect(errorCode(otherBody)).toBe("IDEMPOTENCY_KEY_REUSED");
    const otherRoute = await api.post("/api/v1/coupons/issue", { userId, couponId }, withKey("k"));
    expect(errorCode(otherRoute)).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(await pointsState(userId)).toEqual({ balance: 100, history: 1 });
    const owned = await env.DB.prepare("SELECT count(*) AS n FROM user_coupons WHERE user_id = ?").bind(userId).first("n");
    expect(owned).toBe(0);
  });

  it("keeps keys per user: two users may use the same key", async () => {
    const a = await createUser(0);
    const b = await createUser(0);
    expect((await api.post(CHARGE, { userId: a, amount: 10 }, withKey("shared"))).body.data.balance).toBe(10);
    expect((await api.post(CHARGE, { userId: b, amount: 20 }, withKey("shared"))).body.data.balance).toBe(20);
  });

  it("an Idempotency-Key another user already used on /orders and /points/use never replays that user's answer: each gets their own effect", async () => {
    const { createProduct } = await import("../support/http");
    const p = await createProduct(1_000, 10);
    const [a, b] = [await createUser(10_000), await createUser(10_000)];
    const key = withKey("shared-key");
    const orderOf = async (userId: number) => api.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] }, key);
    const oa = await orderOf(a);
    const ob = await orderOf(b);
    expect([oa.status, ob.status]).toEqual([201, 201]);
    expect(ob.headers.get("idempotent-replayed")).toBeNull();
    expect(ob.body.data.orderId).not.toBe(oa.body.data.orderId);
    const payKey = withKey("shared-pay-key");
    const pa = await api.post("/api/v1/points/use", { userId: a, orderId: oa.body.data.orderId }, payKey);
    const pb = await api.post("/api/v1/points/use", { userId: b, orderId: ob.body.data.orderId }, payKey);
    expect([pa.status, pb.status]).toEqual([200, 200]);
    expect(pb.headers.get("idempotent-replayed")).toBeNull();
    expect(pb.body.data).toMatchObject({ orderId: ob.body.data.orderId, balance: 9_000 });
    // And b cannot use the key to pay a's order: that order is someone else's (404), whatever the key holds.
    const steal = await api.post("/api/v1/points/use", { userId: b, orderId: oa.body.data.orderId }, withKey("shared-key-2"));
    expect(errorCode(steal)).toBe("ORDER_NOT_FOUND");
    expect((await pointsState(a))!.balance).toBe(9_000);
    expect((await pointsState(b))!.balance).toBe(9_000);
  });

  it("does not store a 5xx: the claim is freed and a retry with the same key does the work once", async () => {
    const userId = await createUser(0);
    vi.spyOn(PointsService.prototype, "charge").mockRejectedValueOnce(new Error("D1 went away"));
    const failed = await api.post(CHARGE, { userId, amount: 400 }, withKey("retry-me"));
    expect(failed.status).toBe(500);
    expect(await keyRows(userId)).toEqual([]);
    const retried = await api.post(CHARGE, { userId, amount: 400 }, withKey("retry-me"));
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    expect((await api.post(CHARGE, { userId, amount: 400 }, withKey("retry-me"))).headers.get("idempotent-replayed")).toBe("true");
    expect(await pointsState(userId)).toEqual({ balance: 400, history: 1 });
  });

  it("stores and replays a 4xx business refusal", async () => {
    const userId = await createUser(0);
    const first = await api.post(CHARGE, { userId, amount: 1_000_001 }, withKey("too-much"));
    const again = await api.post(CHARGE, { userId, amount: 1_000_001 }, withKey("too-much"));
    expect(errorCode(first)).toBe("CHARGE_LIMIT_EXCEEDED");
    expect(again.status).toBe(409);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await keyRows(userId)).toEqual([{ key: "too-much", status_code: 409 }]);
  });

  it("answers 409 IDEMPOTENCY_KEY_IN_PROGRESS for a claim an older version left in flight, and takes it over after the lease", async () => {
    const userId = await createUser(0);
    const body = JSON.stringify({ userId, amount: 50 });
    const t = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (user_id, key, scope, request_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
      .bind(userId, "busy", `POST ${CHARGE}`, await requestHash("POST", CHARGE, body), t, t + IDEMPOTENCY_TTL_MS)
      .run();
    const app = testApp({}, { now: () => t });
    const res = await app.call("POST", CHARGE, { body, headers: { "content-type": "application/json", ...withKey("busy") } });
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
    expect(await pointsState(userId)).toEqual({ balance: 0, history: 0 });

    // A claim left in flight past the lease (the Worker died mid-request) is taken over.
    const later = testApp({}, { now: () => t + 121_000 });
    const resumed = await later.call("POST", CHARGE, { body, headers: { "content-type": "application/json", ...withKey("busy") } });
    expect(resumed.status).toBe(200);
    expect(await pointsState(userId)).toEqual({ balance: 50, history: 1 });
  });

  it("forgets a key after 24 h, and the cron purges expired keys", async () => {
    const userId = await createUser(0);
    const t = Date.now();
    const today = testApp({}, { now: () => t });
    const tomorrow = testApp({}, { now: () => t + IDEMPOTENCY_TTL_MS + 1 });
    expect((await today.post(CHARGE, { userId, amount: 10 }, withKey("daily"))).body.data.balance).toBe(10);
    expect((await today.post(CHARGE, { userId, amount: 10 }, withKey("daily"))).headers.get("idempotent-replayed")).toBe("true");
    expect((await tomorrow.post(CHARGE, { userId, amount: 10 }, withKey("daily"))).body.data.balance).toBe(20);

    expect((await today.post(CHARGE, { userId, amount: 10 }, withKey("old"))).status).toBe(200);
    // Earlier tests' keys in this file expire by then too; "daily" was re-claimed tomorrow and stays.
    expect(await purgeExpiredIdempotencyKeys(env.DB, t + IDEMPOTENCY_TTL_MS)).toBeGreaterThanOrEqual(1);
    expect(await keyRows(userId)).toEqual([{ key: "daily", status_code: 200 }]);
    expect(JOBS["* * * * *"]!.map((j) => j.name)).toContain("idempotency-purge");
  });

  it("refuses a key that is empty or longer than 255 characters with 400 VALIDATION_FAILED", async () => {
    const userId = await createUser(0);
    for (const key of ["", "x".repeat(256)]) {
      const res = await api.post(CHARGE, { userId, amount: 10 }, withKey(key));
      expect(res.status).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
    expect((await api.post(CHARGE, { userId, amount: 10 }, withKey("x".repeat(255)))).status).toBe(200);
    expect(await pointsState(userId)).toEqual({ balance: 10, history: 1 });
  });

  it("replays coupon issuance on both issue routes without a second user coupon", async () => {
    const userId = await createUser(0);
    const a = await createCoupon();
    const b = await createCoupon();
    for (const [path, body] of [
      ["/api/v1/coupons/issue", { userId, couponId: a }],
      [`/api/v1/coupons/${b}/issue`, { userId }],
    ] as const) {
      const key = `issue-${path}`;
      const first = await api.post(path, body, withKey(key));
      const again = await api.post(path, body, withKey(key));
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
    }
    const owned = await env.DB.prepare("SELECT count(*) AS n FROM user_coupons WHERE user_id = ?").bind(userId).first("n");
    expect(owned).toBe(2);
  });

  it("behaves as before without the header (a repeat charges again)", async () => {
    const userId = await createUser(0);
    await call("POST", CHARGE, { body: JSON.stringify({ userId, amount: 5 }), headers: { "content-type": "application/json" } });
    await api.post(CHARGE, { userId, amount: 5 });
    expect(await pointsState(userId)).toEqual({ balance: 10, history: 2 });
    expect(await keyRows(userId)).toEqual([]);
  });
});
