import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { adminHeaders, createUser, errorCode } from "../support/http";
import { pointsState, testApp } from "../support/secure-app";

const CHARGE = "/api/v1/points/charge";
const MINUTE = 60_000;
/** 10 s into a minute, so the first window has 50 s left. */
const T0 = Math.floor(Date.UTC(2026, 10, 26, 0, 0, 0) / MINUTE) * MINUTE + 10_000;

/** An app limited to `limit` writes per minute whose clock the test moves. */
function limitedApp(limit: number) {
  const clock = { now: T0 };
  const app = testApp({ RATE_LIMIT_WRITES_PER_MINUTE: String(limit) }, { now: () => clock.now });
  return { app, clock };
}

const from = (ip: string) => ({ "cf-connecting-ip": ip });

describe("write rate limit (RATE_LIMIT_WRITES_PER_MINUTE)", () => {
  it("lets a user write `limit` times a minute, answers 429 with Retry-After, and recovers in the next window", async () => {
    const { app, clock } = limitedApp(3);
    const userId = await createUser(0);
    for (let i = 0; i < 3; i++) expect((await app.post(CHARGE, { userId, amount: 10 }, from("10.0.0.1"))).status).toBe(200);
    const refused = await app.post(CHARGE, { userId, amount: 10 }, from("10.0.0.2"));
    expect(refused.status).toBe(429);
    expect(errorCode(refused)).toBe("RATE_LIMITED");
    expect(refused.body.message).toBe("요청이 너무 많습니다.");
    expect(refused.headers.get("retry-after")).toBe("50");
    expect(await pointsState(userId)).toEqual({ balance: 30, history: 3 });

    clock.now += 49_000;
    expect((await app.post(CHARGE, { userId, amount: 10 }, from("10.0.0.3"))).headers.get("retry-after")).toBe("1");
    clock.now += 1_000; // the next minute starts
    expect((await app.post(CHARGE, { userId, amount: 10 }, from("10.0.0.4"))).status).toBe(200);
    expect(await pointsState(userId)).toEqual({ balance: 40, history: 4 });
  });

  it("limits one IP across users, while another IP still gets through", async () => {
    const { app } = limitedApp(2);
    const users = [await createUser(0), await createUser(0), await createUser(0)];
    expect((await app.post(CHARGE, { userId: users[0], amount: 1 }, from("192.0.2.7"))).status).toBe(200);
    expect((await app.post(CHARGE, { userId: users[1], amount: 1 }, from("192.0.2.7"))).status).toBe(200);
    const refused = await app.post(CHARGE, { userId: users[2], amount: 1 }, from("192.0.2.7"));
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("50");
    expect((await app.post(CHARGE, { userId: users[2], amount: 1 }, from("192.0.2.8"))).status).toBe(200);
    // No CF-Connecting-IP: the "unknown" bucket, limited like any other.
    expect((await app.post(CHARGE, { userId: users[0], amount: 1 })).status).toBe(200);
  });

  it("counts writes on the coupon routes too, but never reads or admin calls", async () => {
    const { app } = limitedApp(1);
    const userId = await createUser(0);
    expect((await app.post("/api/v1/coupons/issue", { userId, couponId: 999_999 }, from("198.51.100.1"))).status).toBe(404);
    expect((await app.post(`/api/v1/coupons/999999/issue`, { userId }, from("198.51.100.2"))).status).toBe(429);
    for (let i = 0; i < 5; i++) {
      expect((await app.get(`/api/v1/points?userId=${userId}`, from("198.51.100.1"))).status).toBe(200);
      expect((await app.post("/api/v1/admin/users", { name: "ops" }, { ...adminHeaders, ...from("198.51.100.1") })).status).toBe(201);
    }
  });

  it("is off at 0 (the default): 20 quick writes from one client all pass", async () => {
    const { app } = limitedApp(0);
    const userId = await createUser(0);
    const results = await Promise.all(Array.from({ length: 20 }, () => app.post(CHARGE, { userId, amount: 1 }, from("203.0.113.9"))));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
  });
});

describe("RateLimiter Durable Object", () => {
  it("allows exactly `limit` of 30 concurrent hits in one window", async () => {
    const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName("test:concurrent"));
    const decisions = await Promise.all(Array.from({ length: 30 }, () => stub.hit(MINUTE, 7, T0)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(7);
    expect(decisions.filter((d) => !d.allowed).every((d) => d.retryAfterSeconds === 50)).toBe(true);
  });

  it("starts a fresh count when the window moves on", async () => {
    const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName("test:windows"));
    expect(await stub.hit(MINUTE, 1, T0)).toEqual({ allowed: true, retryAfterSeconds: 0, remaining: 0 });
    expect((await stub.hit(MINUTE, 1, T0 + 49_999)).allowed).toBe(false);
    expect(await stub.hit(MINUTE, 1, T0 + 50_000)).toEqual({ allowed: true, retryAfterSeconds: 0, remaining: 0 });
  });
});
