import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { analyticsMetrics } from "../../src/shared/metrics";
import { createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { testApp } from "../support/secure-app";

/**
 * Miniflare binds `METRICS` (wrangler.toml) but only accepts and drops the points: Analytics
 * Engine cannot be queried locally. These tests hand the app a dataset that records each
 * `writeDataPoint` call instead, and read the layout documented in src/shared/metrics.ts.
 */
function recordingDataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  return { points, dataset: { writeDataPoint: (p?: AnalyticsEngineDataPoint) => void points.push(p!) } satisfies AnalyticsEngineDataset };
}

const requestPoints = (points: AnalyticsEngineDataPoint[]) => points.filter((p) => p.blobs?.[0] === "request");
const events = (points: AnalyticsEngineDataPoint[], kind: string) => points.filter((p) => p.blobs?.[0] === kind);

describe("Analytics Engine data points", () => {
  it("writes one request point per API call: route template, status, error code, hops, D1 write tx, request id (cf-ray)", async () => {
    const { points, dataset } = recordingDataset();
    const app = testApp({ METRICS: dataset });
    const userId = await createUser(0);
    const ray = "8f1a2b3c4d5e6f70-ICN";
    const charged = await app.post("/api/v1/points/charge", { userId, amount: 10 }, { "cf-ray": ray });
    expect(charged.status).toBe(200);
    expect(charged.headers.get("x-request-id")).toBe(ray);
    const [charge] = requestPoints(points);
    expect(charge).toEqual({
      indexes: ["POST /api/v1/points/charge"],
      blobs: ["request", "POST /api/v1/points/charge", "", "", ray, ""],
      doubles: [200, 1, expect.any(Number), 1, 1, 0, expect.any(Number), expect.any(Number)],
    });
    // A refusal names its error code; a path no route serves is `unmatched`; pages outside /api write nothing.
    await app.get("/api/v1/points?userId=999999999");
    await app.get("/api/v1/nowhere");
    await app.get("/health");
    const [missing, nowhere, ...rest] = requestPoints(points).slice(1);
    expect(missing!.blobs!.slice(1, 3)).toEqual(["GET /api/v1/points", "USER_NOT_FOUND"]);
    expect(missing!.doubles![0]).toBe(404);
    expect(nowhere!.blobs!.slice(1, 3)).toEqual(["GET unmatched", "NOT_FOUND"]);
    expect(rest).toEqual([]);
  });

  it("counts issuances and the issuer's sold-out refusal per coupon, and the isolate's remembered refusals only as requests", async () => {
    const { points, dataset } = recordingDataset();
    const app = testApp({ METRICS: dataset });
    const couponId = await createCoupon({ quantity: 1 });
    const [winner, late, later] = [await createUser(), await createUser(), await createUser()];
    expect((await app.post(`/api/v1/coupons/${couponId}/issue`, { userId: winner })).status).toBe(201);
    expect(errorCode(await app.post(`/api/v1/coupons/${couponId}/issue`, { userId: late }))).toBe("COUPON_SOLD_OUT");
    expect(errorCode(await app.post(`/api/v1/coupons/${couponId}/issue`, { userId: later }))).toBe("COUPON_SOLD_OUT");
    expect(events(points, "coupon.issued")).toEqual([
      { indexes: [`coupon:${couponId}`], blobs: ["coupon.issued", String(couponId)], doubles: [1] },
    ]);
    expect(events(points, "coupon.sold_out")).toEqual([
      { indexes: [`coupon:${couponId}`], blobs: ["coupon.sold_out", String(couponId)], doubles: [1] },
    ]);
    const issues = requestPoints(points).filter((p) => p.blobs![1] === "POST /api/v1/coupons/:couponId/issue");
    expect(issues.map((p) => [p.doubles![0], p.blobs![2], p.doubles![1]])).toEqual([
      [201, "", 2],
      [409, "COUPON_SOLD_OUT", 1],
      [409, "COUPON_SOLD_OUT", 0], // the isolate remembered: no round trip, no second event
    ]);
  });

  it("records a stock refusal per product with the units the object had left", async () => {
    const { points, dataset } = recordingDataset();
    const app = testApp({ METRICS: dataset });
    const userId = await createUser(1_000_000);
    const productId = await createProduct(100, 2);
    const refused = await app.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 3 }] });
    expect(errorCode(refused)).toBe("INSUFFICIENT_STOCK");
    expect(events(points, "stock.insufficient")).toEqual([
      { indexes: [`product:${productId}`], blobs: ["stock.insufficient", String(productId)], doubles: [1, 2] },
    ]);
    expect(requestPoints(points).at(-1)!.blobs!.slice(1, 3)).toEqual(["POST /api/v1/orders", "INSUFFICIENT_STOCK"]);
  });

  it("marks a write refused by a rate limit RATE_LIMITED", async () => {
    const { points, dataset } = recordingDataset();
    const app = testApp({ METRICS: dataset, RATE_LIMIT_IP_WRITES_PER_MINUTE: "1", WRITES_PER_IP: env.TEST_WRITES_1 });
    const ip = { "cf-connecting-ip": `10.${crypto.getRandomValues(new Uint8Array(3)).join(".")}` };
    const userId = await createUser(0);
    for (let i = 0; i < 3; i++) await app.post("/api/v1/points/charge", { userId, amount: 1 }, ip);
    expect(requestPoints(points).filter((p) => p.blobs![2] === "RATE_LIMITED" && p.doubles![0] === 429).length).toBeGreaterThanOrEqual(1);
  });

  it("is a no-op without a dataset, and a dataset that throws never fails the request", async () => {
    const userId = await createUser(0);
    expect((await testApp({ METRICS: undefined }).post("/api/v1/points/charge", { userId, amount: 1 })).status).toBe(200);
    const warned = vi.spyOn(console, "warn").mockImplementation(() => {});
    const throwing = {
      writeDataPoint: () => {
        throw new Error("too many data points");
      },
    };
    expect((await testApp({ METRICS: throwing }).post("/api/v1/points/charge", { userId, amount: 1 })).status).toBe(200);
    expect(() => analyticsMetrics(throwing).event("coupon.issued", 1)).not.toThrow();
    expect(warned.mock.calls.filter((c) => String(c[0]).includes("analytics engine write failed")).length).toBeLessThanOrEqual(1);
    warned.mockRestore();
  });
});

describe("request id", () => {
  it("is cf-ray when Cloudflare sends one (over a caller's X-Request-Id), else the caller's, else a fresh UUID", async () => {
    const app = testApp({});
    expect((await app.get("/health", { "cf-ray": "8f1a2b3c4d5e6f70-ICN", "x-request-id": "mine" })).headers.get("x-request-id")).toBe(
      "8f1a2b3c4d5e6f70-ICN",
    );
    expect((await app.get("/health", { "x-request-id": "mine" })).headers.get("x-request-id")).toBe("mine");
    expect((await app.get("/health", { "x-request-id": "bad id!" })).headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});
