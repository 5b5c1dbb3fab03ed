import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_BODY_BYTES } from "../../src/app";
import { PointsService } from "../../src/points/points.service";
import { ADMIN_TOKEN, adminHeaders, createUser, errorCode } from "../support/http";
import { bearer, JWT_SECRET, testApp, tokenFor } from "../support/secure-app";

const SHOP = "https://shop.example";
const app = testApp({ ALLOWED_ORIGINS: `${SHOP}, https://admin.shop.example`, JWT_SECRET });

afterEach(() => vi.restoreAllMocks());

const preflight = (origin: string) =>
  app.call("OPTIONS", "/api/v1/points/charge", {
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type, idempotency-key",
    },
  });

describe("CORS by ALLOWED_ORIGINS", () => {
  it("echoes an allowed origin on a preflight (no token needed) and allows the auth and idempotency headers", async () => {
    const res = await preflight(SHOP);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(SHOP);
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("idempotency-key");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    // A client sends its D1 bookmark back, and revalidates cached catalogue reads.
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("x-d1-bookmark");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("if-none-match");
    expect(res.headers.get("vary")).toContain("Origin");
  });

  it("does not echo any other origin", async () => {
    for (const origin of ["https://evil.example", "https://shop.example.evil.example", "null", "http://shop.example"]) {
      const res = await preflight(origin);
      expect(res.headers.get("access-control-allow-origin"), origin).toBeNull();
    }
  });

  it("exposes the request id, Retry-After, Idempotent-Replayed, Server-Timing, x-d1-bookmark and ETag to an allowed origin", async () => {
    const res = await app.get("/api/v1/products", { origin: SHOP });
    expect(res.headers.get("access-control-allow-origin")).toBe(SHOP);
    const exposed = res.headers.get("access-control-expose-headers")?.toLowerCase() ?? "";
    for (const h of ["x-request-id", "retry-after", "idempotent-replayed", "server-timing", "x-d1-bookmark", "etag"])
      expect(exposed).toContain(h);
  });
});

describe("secure headers and body limit", () => {
  it("sets the secure headers on API answers, errors included", async () => {
    for (const res of [await app.get("/api/v1/products"), await app.get("/api/v1/points?userId=1")]) {
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
      expect(res.headers.get("strict-transport-security")).toMatch(/max-age=/);
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("x-request-id")).toBeTruthy();
    }
  });

  it("refuses a body over 64 KiB with 413 before identity or parsing", async () => {
    const userId = await createUser(0);
    const json = JSON.stringify({ userId, amount: 1, pad: "" });
    const over = json.replace('"pad":""', `"pad":"${"x".repeat(MAX_BODY_BYTES - json.length + 1)}"`);
    expect(over.length).toBe(MAX_BODY_BYTES + 1);
    const res = await app.call("POST", "/api/v1/points/charge", {
      body: over,
      headers: { "content-type": "application/json", ...bearer(await tokenFor(userId)) },
    });
    expect(res.status).toBe(413);
    expect(errorCode(res)).toBe("PAYLOAD_TOO_LARGE");
    const atLimit = json.replace('"pad":""', `"pad":"${"x".repeat(MAX_BODY_BYTES - json.length)}"`);
    expect(atLimit.length).toBe(MAX_BODY_BYTES);
    const under = await app.call("POST", "/api/v1/points/charge", {
      body: atLimit,
      headers: { "content-type": "application/json", ...bearer(await tokenFor(userId)) },
    });
    expect(under.status).toBe(400); // read and validated (unknown field "pad"), not refused for size
    expect(under.body.detail).toContain("pad");
  });
});

describe("logs", () => {
  it("carry the request id, and never the Authorization header, tokens or secrets", async () => {
    const lines: string[] = [];
    for (const method of ["log", "warn", "error"] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
    }
    const userId = await createUser(0);
    const token = await tokenFor(userId);
    const forged = await tokenFor(userId, {}, "wrong-secret");
    // A failure whose message carries a credential, as a careless library might produce.
    vi.spyOn(PointsService.prototype, "charge").mockRejectedValueOnce(new Error(`upstream said: Authorization: Bearer ${token}`));
    const answers = [
      await app.post("/api/v1/points/charge", { userId, amount: 1 }, bearer(token)),
      await app.post("/api/v1/points/charge", { userId, amount: 1 }, bearer(token)),
      await app.get(`/api/v1/points?userId=${userId}`, bearer(forged)),
      await app.post("/api/v1/admin/users", { name: "x" }, adminHeaders),
      await app.post("/api/v1/admin/users", { name: "x" }, { authorization: "Bearer guessed-admin-token" }),
    ];
    expect(answers.map((r) => r.status)).toEqual([500, 200, 401, 201, 403]);
    const joined = lines.join("\n");
    for (const secret of [token, forged, token.split(".")[2]!, JWT_SECRET, ADMIN_TOKEN, "guessed-admin-token"]) {
      expect(joined).not.toContain(secret);
    }
    expect(joined).toContain("[redacted");
    for (const res of answers) {
      const id = res.headers.get("x-request-id")!;
      const requestLine = lines.find((l) => l.includes('"msg":"request"') && l.includes(id));
      expect(requestLine, id).toBeDefined();
    }
    const errorLine = lines.find((l) => l.includes('"msg":"unhandled error"'))!;
    expect(errorLine).toContain(answers[0]!.headers.get("x-request-id")!);
  });
});
