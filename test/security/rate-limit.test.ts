import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { adminHeaders, createUser, errorCode, type ApiResponse } from "../support/http";
import { pointsState, testApp } from "../support/secure-app";

const CHARGE = "/api/v1/points/charge";
const MINUTE = 60_000;
/** 10 s into a minute, so the window the headers announce has 50 s left. */
const T0 = Math.floor(Date.UTC(2026, 10, 26, 0, 0, 0) / MINUTE) * MINUTE + 10_000;

/**
 * The limits are Miniflare's simulation of the `[[ratelimits]]` binding, whose windows follow
 * the wall clock's minutes. A test cannot move that clock, so it sends 2 x limit + 1 writes:
 * at most one window boundary falls inside a test, so at least one of them is refused
 * whichever side of it they land. The headers are computed from the app's injected clock.
 */
function limitedApp(limits: { perUser?: 1 | 2 | 3; perIp?: 1 | 2 | 3 }) {
  return testApp(
    {
      RATE_LIMIT_WRITES_PER_MINUTE: String(limits.perUser ?? 0),
      RATE_LIMIT_IP_WRITES_PER_MINUTE: String(limits.perIp ?? 0),
      ...(limits.perUser ? { WRITES_PER_USER: env[`TEST_WRITES_${limits.perUser}`] } : {}),
      ...(limits.perIp ? { WRITES_PER_IP: env[`TEST_WRITES_${limits.perIp}`] } : {}),
    },
    { now: () => T0 },
  );
}

/** A client address no other test (or earlier run within the minute) has used. */
const freshIp = () => `10.${crypto.getRandomValues(new Uint8Array(3)).join(".")}`;
const from = (ip: string) => ({ "cf-connecting-ip": ip });

function expectRateLimitHeaders(res: ApiResponse, limit: number) {
  expect(res.status).toBe(429);
  expect(errorCode(res)).toBe("RATE_LIMITED");
  expect(res.body.message).toBe("요청이 너무 많습니다.");
  expect(res.headers.get("ratelimit-limit")).toBe(String(limit));
  expect(res.headers.get("ratelimit-remaining")).toBe("0");
  expect(res.headers.get("ratelimit-reset")).toBe("50");
  expect(res.headers.get("retry-after")).toBe("50");
}

describe("write rate limits ([[ratelimits]] bindings)", () => {
  it("refuses a user over RATE_LIMIT_WRITES_PER_MINUTE from any IP: 429 with RateLimit-Limit/-Remaining/-Reset and Retry-After; a refused write changes nothing", async () => {
    const app = limitedApp({ perUser: 3 });
    const userId = await createUser(0);
    const answers: ApiResponse[] = [];
    for (let i = 0; i < 7; i++) answers.push(await app.post(CHARGE, { userId, amount: 10 }, from(freshIp())));
    // A fresh key's first `limit` writes always pass (a new window starts at zero too).
    expect(answers.slice(0, 3).map((r) => r.status)).toEqual([200, 200, 200]);
    const refused = answers.filter((r) => r.status !== 200);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const r of refused) expectRateLimitHeaders(r, 3);
    // A successful write carries none: the binding answers yes or no, so its remaining count is unknown.
    expect(answers[0]!.headers.get("ratelimit-remaining")).toBeNull();
    const passed = answers.length - refused.length;
    expect(await pointsState(userId)).toEqual({ balance: 10 * passed, history: passed });
  });

  it("limits one IP across users (RATE_LIMIT_IP_WRITES_PER_MINUTE), while another IP still gets through", async () => {
    const app = limitedApp({ perIp: 2 });
    const ip = freshIp();
    const answers: ApiResponse[] = [];
    for (let i = 0; i < 5; i++) answers.push(await app.post(CHARGE, { userId: await createUser(0), amount: 1 }, from(ip)));
    expect(answers.slice(0, 2).map((r) => r.status)).toEqual([200, 200]);
    const refused = answers.filter((r) => r.status !== 200);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const r of refused) expectRateLimitHeaders(r, 2);
    expect((await app.post(CHARGE, { userId: await createUser(0), amount: 1 }, from(freshIp()))).status).toBe(200);
  });

  it("counts an IP's unauthenticated and invalid writes too, before identity", async () => {
    const app = testApp(
      {
        JWT_SECRET: "rate-limit-test-secret-0123456789",
        RATE_LIMIT_IP_WRITES_PER_MINUTE: "1",
        WRITES_PER_IP: env.TEST_WRITES_1,
      },
      { now: () => T0 },
    );
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await app.post(CHARGE, { userId: 1, amount: 1 }, from(ip))).status);
    expect(statuses[0]).toBe(401);
    expect(statuses).toContain(429);
  });

  it("counts writes on the coupon routes, but never reads or admin calls", async () => {
    const app = limitedApp({ perIp: 1 });
    const ip = freshIp();
    const userId = await createUser(0);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await app.post(`/api/v1/coupons/999999/issue`, { userId }, from(ip))).status);
    expect(statuses[0]).toBe(404);
    expect(statuses).toContain(429);
    for (let i = 0; i < 5; i++) {
      expect((await app.get(`/api/v1/points?userId=${userId}`, from(ip))).status).toBe(200);
      expect((await app.post("/api/v1/admin/users", { name: "ops" }, { ...adminHeaders, ...from(ip) })).status).toBe(201);
    }
  });

  it("is off at 0 (the local default), bindings or not: 20 quick writes from one client all pass", async () => {
    const app = testApp({ WRITES_PER_USER: env.TEST_WRITES_1, WRITES_PER_IP: env.TEST_WRITES_1 });
    const userId = await createUser(0);
    const results = await Promise.all(Array.from({ length: 20 }, () => app.post(CHARGE, { userId, amount: 1 }, from("203.0.113.9"))));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
  });

  it("lets writes through, with one error log per isolate, when a limit is on but its binding is missing", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const app = testApp({ RATE_LIMIT_WRITES_PER_MINUTE: "1", WRITES_PER_USER: undefined });
      const userId = await createUser(0);
      for (let i = 0; i < 3; i++) expect((await app.post(CHARGE, { userId, amount: 1 })).status).toBe(200);
      const lines = errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("[[ratelimits]] binding is missing"));
      expect(lines.length).toBeLessThanOrEqual(1);
    } finally {
      errors.mockRestore();
    }
  });
});
