import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { ADMIN_TOKEN, adminHeaders, createProduct, createUser, errorCode } from "../support/http";
import { bearer, JWT_SECRET, pointsState, testApp, tokenFor } from "../support/secure-app";
import { STATUS_MESSAGES } from "../../src/shared/errors";

/** A deployed environment whose operator set neither secret (what `wrangler dev --env production` runs without .dev.vars). */
const NO_SECRETS = { ENVIRONMENT: "production", JWT_SECRET: "", ADMIN_TOKEN: "" };

type Op = { method: string; path: string; publicRead: boolean; admin: boolean };

/** Every /api/v1 operation of the served document, with its path parameters filled in. */
async function operations(app: ReturnType<typeof testApp>): Promise<Op[]> {
  const doc = (await app.get("/openapi.json")).body;
  return Object.entries<any>(doc.paths)
    .filter(([path]) => path.startsWith("/api/v1/"))
    .flatMap(([path, item]) =>
      Object.entries<any>(item).map(([method, op]) => ({
        method: method.toUpperCase(),
        path: path.replace(/\{[^}]+\}/g, "1"),
        // A public read opts out of the document's user security; admin routes declare the admin bearer.
        publicRead: Array.isArray(op.security) && op.security.length === 0,
        admin: path.startsWith("/api/v1/admin/"),
      })),
    );
}

const misconfiguredLogs = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.map((args) => String(args[0])).filter((line) => line.includes('"msg":"misconfigured'));

function expectMisconfigured(res: { status: number; headers: Headers; body: any }, what: string) {
  expect(res.status, what).toBe(503);
  expect(errorCode(res), what).toBe("MISCONFIGURED");
  expect(res.body.message, what).toBe(STATUS_MESSAGES[503]);
  expect(res.headers.get("retry-after"), what).toBe("60");
  // Which secret is missing is for the operator's log, not for clients.
  expect(JSON.stringify(res.body), what).not.toMatch(/JWT_SECRET|ADMIN_TOKEN/);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a deployed environment without its secrets fails closed", () => {
  // First in the file: the report is once per isolate, so no earlier test may have made it.
  it("answers 503 MISCONFIGURED on every user and admin route, keeps catalogue reads open, changes nothing, and logs one error for the isolate", async () => {
    const errors = vi.spyOn(console, "error");
    const userId = await createUser(50_000);
    const productId = await createProduct(1_000, 5);
    const before = await pointsState(userId);
    const app = testApp(NO_SECRETS);
    const ops = await operations(app);
    expect(ops.filter((o) => !o.publicRead && !o.admin).length).toBeGreaterThanOrEqual(10);
    expect(ops.filter((o) => o.admin).length).toBeGreaterThanOrEqual(10);

    const token = await tokenFor(userId);
    for (const { method, path, publicRead, admin } of ops) {
      const json = method === "GET" ? undefined : { userId, amount: 1_000, orderProducts: [{ productId, quantity: 1 }], name: "x" };
      const query = method === "GET" && !admin ? `${path.includes("?") ? "&" : "?"}userId=${userId}` : "";
      if (publicRead) {
        const res = await app.call(method, path + query);
        expect(res.status, `${method} ${path}`).not.toBe(503);
        continue;
      }
      // Closed whatever the request carries: no header, a user's token, the admin token of another deployment.
      for (const headers of [{}, bearer(token), adminHeaders]) {
        expectMisconfigured(await app.call(method, path + query, { json, headers }), `${method} ${path} ${JSON.stringify(headers)}`);
      }
    }
    expect((await app.get(`/api/v1/products/${productId}`)).status).toBe(200);
    expect((await app.get("/health")).status).toBe(200);
    expect(await pointsState(userId)).toEqual(before);

    // A second app on another env object in the same isolate: still refused, still no second line.
    const again = testApp(NO_SECRETS);
    expectMisconfigured(await again.get(`/api/v1/points?userId=${userId}`), "second app");
    const lines = misconfiguredLogs(errors);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "error", environment: "production", missing: ["JWT_SECRET", "ADMIN_TOKEN"] });
    // No per-request "unhandled error" line either.
    expect(errors.mock.calls.map((a) => String(a[0])).filter((l) => l.includes("unhandled error"))).toEqual([]);
  });

  it('treats an unset ENVIRONMENT as deployed (only an explicit "development" runs open)', async () => {
    const userId = await createUser(0);
    const app = testApp({ ENVIRONMENT: "", JWT_SECRET: "", ADMIN_TOKEN: "" });
    expectMisconfigured(await app.get(`/api/v1/points?userId=${userId}`), "user route");
    expectMisconfigured(await app.post("/api/v1/admin/users", { name: "x" }, adminHeaders), "admin route");
  });

  it("closes only what lacks its secret: with JWT_SECRET alone users are served, admin is closed", async () => {
    const userId = await createUser(0);
    const app = testApp({ ENVIRONMENT: "production", JWT_SECRET, ADMIN_TOKEN: "" });
    const res = await app.post("/api/v1/points/charge", { userId, amount: 1_000 }, bearer(await tokenFor(userId)));
    expect(res.status).toBe(200);
    expect((await app.post("/api/v1/points/charge", { userId, amount: 1_000 })).status).toBe(401);
    expectMisconfigured(await app.post("/api/v1/admin/users", { name: "x" }, adminHeaders), "admin route");
  });

  it("with ADMIN_TOKEN alone the admin API works and user routes are closed", async () => {
    const userId = await createUser(0);
    const app = testApp({ ENVIRONMENT: "staging", JWT_SECRET: "", ADMIN_TOKEN });
    expect((await app.post("/api/v1/admin/users", { name: "ops" }, adminHeaders)).status).toBe(201);
    expectMisconfigured(await app.post("/api/v1/points/charge", { userId, amount: 1_000 }), "user route");
  });
});

describe("local development keeps today's behaviour", () => {
  it('runs with ENVIRONMENT = "development" from wrangler.toml\'s top-level vars (what npm run dev and the tests use)', () => {
    expect(env.ENVIRONMENT).toBe("development");
  });

  it("leaves user routes open without JWT_SECRET and the admin API off (403) without ADMIN_TOKEN, logging nothing", async () => {
    const errors = vi.spyOn(console, "error");
    const userId = await createUser(0);
    const app = testApp({ JWT_SECRET: "", ADMIN_TOKEN: "" });
    const res = await app.post("/api/v1/points/charge", { userId, amount: 1_000 });
    expect(res.status).toBe(200);
    expect(res.body.data.balance).toBe(1_000);
    const admin = await app.post("/api/v1/admin/users", { name: "x" }, adminHeaders);
    expect(admin.status).toBe(403);
    expect(errorCode(admin)).toBe("FORBIDDEN");
    expect((await app.post("/api/v1/admin/users", { name: "x" })).status).toBe(401);
    expect(misconfiguredLogs(errors)).toEqual([]);
  });
});
