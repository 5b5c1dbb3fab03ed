import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { adminHeaders, createProduct, createUser, errorCode } from "../support/http";

/**
 * D1 Sessions API plumbing (local D1 has no replicas, so this pins choices, not latency):
 * which start each route gives its session, the bookmark answered and accepted back, and
 * what a malformed bookmark gets. The app runs under an env whose DB records every
 * `withSession()` argument; everything else is the test file's real bindings.
 */
function recordingApp() {
  const starts: string[] = [];
  const DB = {
    withSession: (arg: string) => {
      starts.push(arg);
      return env.DB.withSession(arg);
    },
    prepare: (q: string) => env.DB.prepare(q),
    batch: (s: D1PreparedStatement[]) => env.DB.batch(s),
  };
  const appEnv = { ...env, DB: DB as unknown as D1Database };
  const app = createApp();
  async function call(method: string, path: string, json?: unknown, headers: Record<string, string> = {}) {
    const ctx = createExecutionContext();
    const init: RequestInit = { method, headers: { ...headers, ...(json ? { "content-type": "application/json" } : {}) } };
    if (json) init.body = JSON.stringify(json);
    const res = await app.request(`http://example.com${path}`, init, appEnv, ctx);
    await waitOnExecutionContext(ctx);
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
  }
  /** Calls once and returns the session start that request chose. */
  async function startOf(method: string, path: string, json?: unknown, headers?: Record<string, string>) {
    const before = starts.length;
    const res = await call(method, path, json, headers);
    expect(starts.length - before, `${method} ${path}: one session per request`).toBe(1);
    return { start: starts[starts.length - 1], res };
  }
  return { call, startOf };
}

const BOOKMARK = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/;

describe("session start per route", () => {
  it("public catalogue and ranking reads start first-unconstrained (a replica may answer)", async () => {
    const app = recordingApp();
    const p = await createProduct(700, 3);
    for (const path of [
      "/api/v1/products?page=0&size=5",
      `/api/v1/products/${p}`,
      "/api/v1/products/top?size=5",
      "/api/v1/products/best",
    ]) {
      const { start, res } = await app.startOf("GET", path);
      expect(res.status, path).toBe(200);
      expect(start, path).toBe("first-unconstrained");
    }
  });

  it("writes, a user's own reads and admin calls start first-primary", async () => {
    const app = recordingApp();
    const userId = await createUser(5_000);
    const p = await createProduct(1_000, 5);
    const cases: [string, string, unknown?][] = [
      ["POST", "/api/v1/points/charge", { userId, amount: 10 }],
      ["GET", `/api/v1/points?userId=${userId}`],
      ["GET", `/api/v1/points/history?userId=${userId}`],
      ["GET", `/api/v1/coupons?userId=${userId}`],
      ["POST", "/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] }],
    ];
    for (const [method, path, json] of cases) {
      const { start, res } = await app.startOf(method, path, json);
      expect(res.status, path).toBeLessThan(300);
      expect(start, `${method} ${path}`).toBe("first-primary");
    }
    const orderId = (await app.call("POST", "/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] })).body.data
      .orderId;
    expect((await app.startOf("GET", `/api/v1/orders/${orderId}?userId=${userId}`)).start).toBe("first-primary");
    expect((await app.startOf("POST", "/api/v1/admin/users", { name: "s" }, adminHeaders)).start).toBe("first-primary");
  });
});

describe("x-d1-bookmark", () => {
  it("answers the session's bookmark, and a request sending it back starts from it and reads the write", async () => {
    const app = recordingApp();
    const userId = await createUser(0);
    const charge = await app.call("POST", "/api/v1/points/charge", { userId, amount: 1_234 });
    expect(charge.status).toBe(200);
    const bookmark = charge.headers.get("x-d1-bookmark");
    expect(bookmark).toMatch(BOOKMARK);

    const { start, res } = await app.startOf("GET", `/api/v1/points?userId=${userId}`, undefined, { "x-d1-bookmark": bookmark! });
    expect(start).toBe(bookmark);
    expect(res.body.data.balance).toBe(1_234);
    // Bookmarks sort oldest to newest: the next one is never behind the one sent.
    const next = res.headers.get("x-d1-bookmark")!;
    expect(next).toMatch(BOOKMARK);
    expect(next >= bookmark!).toBe(true);

    // A public read given a bookmark starts from it too (read-your-writes beats "any replica").
    expect((await app.startOf("GET", "/api/v1/products?page=0&size=1", undefined, { "x-d1-bookmark": next })).start).toBe(next);
  });

  it("is on error answers that touched D1, and absent from answers that never opened one", async () => {
    const app = recordingApp();
    const missing = await app.call("GET", "/api/v1/products/987654");
    expect(errorCode(missing)).toBe("PRODUCT_NOT_FOUND");
    expect(missing.headers.get("x-d1-bookmark")).toMatch(BOOKMARK);
    const health = await app.call("GET", "/health");
    expect(health.headers.get("x-d1-bookmark")).toBeNull();
  });

  it("refuses a malformed bookmark with 400 VALIDATION_FAILED before any D1 work, never 500; an empty one counts as absent", async () => {
    const app = recordingApp();
    const userId = await createUser(0);
    const bad = [
      "garbage",
      "00000000-00000000-00000000",
      "0000000g-00000000-00000000-00000000000000000000000000000000",
      `${"0".repeat(8)}-${"0".repeat(8)}-${"0".repeat(8)}-${"0".repeat(200)}`,
      "first-primary",
    ];
    for (const value of bad) {
      for (const [method, path, json] of [
        ["GET", "/api/v1/products"],
        ["GET", `/api/v1/points?userId=${userId}`],
        ["POST", "/api/v1/points/charge", { userId, amount: 1 }],
      ] as [string, string, unknown?][]) {
        const res = await app.call(method, path, json, { "x-d1-bookmark": value });
        expect(res.status, `${value} on ${path}`).toBe(400);
        expect(errorCode(res)).toBe("VALIDATION_FAILED");
        expect(res.body.detail).toContain("x-d1-bookmark");
      }
    }
    expect((await app.call("GET", `/api/v1/points?userId=${userId}`)).body.data.balance).toBe(0); // no charge went through
    const empty = await app.startOf("GET", `/api/v1/points?userId=${userId}`, undefined, { "x-d1-bookmark": "" });
    expect(empty.res.status).toBe(200);
    expect(empty.start).toBe("first-primary");
  });
});
