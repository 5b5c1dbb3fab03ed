import { describe, expect, it } from "vitest";
import { api, call, errorCode } from "../support/http";

describe("HTTP skeleton", () => {
  it("answers an unknown route with the 404 envelope and a request id", async () => {
    const res = await api.get("/api/v1/nope");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ code: 404, error: "NOT_FOUND", message: "요청한 리소스를 찾을 수 없습니다.", detail: expect.any(String) });
    expect(res.headers.get("x-request-id")).toMatch(/.+/);
  });

  it("answers a wrong method on a known path with 405 and an Allow header", async () => {
    const res = await call("DELETE", "/api/v1/points/charge");
    expect(res.status).toBe(405);
    expect(errorCode(res)).toBe("METHOD_NOT_ALLOWED");
    expect(res.headers.get("allow")).toContain("POST");
  });

  it("answers PUT on a POST route with 405 whatever its content type (never 415 first)", async () => {
    for (const headers of [{}, { "content-type": "text/plain" }, { "content-type": "application/json" }] as Record<string, string>[]) {
      const res = await call("PUT", "/api/v1/points/charge", { body: "{}", headers });
      expect(res.status, JSON.stringify(headers)).toBe(405);
      expect(res.headers.get("allow")).toContain("POST");
    }
    expect((await call("PUT", "/api/v1/points/charge")).status, "no body, no content type").toBe(405);
    // The route it does serve still refuses a wrong content type.
    expect((await call("POST", "/api/v1/points/charge", { body: "{}", headers: { "content-type": "text/plain" } })).status).toBe(415);
  });

  it("keeps a caller's X-Request-Id", async () => {
    const res = await api.get("/health", { "x-request-id": "abc-123" });
    expect(res.headers.get("x-request-id")).toBe("abc-123");
  });

  it("serves /health, /openapi.json and /docs", async () => {
    expect((await api.get("/health")).body).toEqual({ status: "ok" });
    const doc = await api.get("/openapi.json");
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe("3.1.0");
    for (const path of [
      "/api/v1/points/charge",
      "/api/v1/points",
      "/api/v1/points/history",
      "/api/v1/products",
      "/api/v1/products/{productId}",
      "/api/v1/admin/users",
    ]) {
      expect(Object.keys(doc.body.paths), path).toContain(path);
    }
    expect(doc.body.components.schemas.ChargeRequest.additionalProperties).toBe(false);
    const docs = await call("GET", "/docs");
    expect(docs.status).toBe(200);
    expect(String(docs.body)).toContain("swagger-ui");
  });

  it("sets secure headers", async () => {
    const res = await api.get("/health");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });
});
