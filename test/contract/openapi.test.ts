import { validate } from "@readme/openapi-parser";
import { describe, expect, it } from "vitest";
import { api } from "../support/http";

/** The served document, validated by a maintained OpenAPI validator, and the edge conventions on every operation. */
const served = async () => (await api.get("/openapi.json")).body;
type Op = { method: string; path: string; op: any };
const operations = (doc: any): Op[] =>
  Object.entries<any>(doc.paths).flatMap(([path, item]) => Object.entries<any>(item).map(([method, op]) => ({ method, path, op })));
const paramNames = (doc: any, op: any): string[] =>
  (op.parameters ?? []).map((p: any) => (p.$ref ? doc.components.parameters[p.$ref.split("/").pop()].name : p.name));

describe("/openapi.json", () => {
  it("is a valid OpenAPI 3.1 document (@readme/openapi-parser)", async () => {
    const doc = await served();
    const result = await validate(structuredClone(doc));
    expect(result.valid, JSON.stringify((result as { errors?: unknown }).errors)).toBe(true);
    expect(result.specification).toBe("OpenAPI");
  });

  it("is refused by the same validator when broken (the check can fail)", async () => {
    const doc = await served();
    const broken = structuredClone(doc);
    broken.paths["/api/v1/points"].get.responses["200"].content["application/json"].schema = { $ref: "#/components/schemas/Nope" };
    expect((await validate(broken)).valid).toBe(false);
    const noResponses = structuredClone(doc);
    noResponses.paths["/api/v1/points"].get.responses = "none";
    expect((await validate(noResponses)).valid).toBe(false);
  });

  it("declares 401/403 on every user route, 429 on user writes, 503 where an object answers, Idempotency-Key on user POSTs", async () => {
    const doc = await served();
    const ops = operations(doc).filter(({ path }) => path.startsWith("/api/v1/"));
    expect(ops.length).toBeGreaterThanOrEqual(21);
    for (const { method, path, op } of ops) {
      const key = `${method.toUpperCase()} ${path}`;
      const statuses = Object.keys(op.responses);
      const params = paramNames(doc, op);
      expect(params, key).toContain("x-d1-bookmark");
      const publicRead = method === "get" && (path.startsWith("/api/v1/products") || path === "/api/v1/coupons/{couponId}");
      const admin = path.startsWith("/api/v1/admin/");
      if (publicRead) {
        expect(statuses, key).toContain("304");
        expect(params, key).toContain("If-None-Match");
        expect(op.security, key).toEqual([]);
      } else {
        expect(statuses, key).toEqual(expect.arrayContaining(["401", "403"]));
      }
      if (method !== "get" && !admin) expect(statuses, key).toContain("429");
      if (method === "post" && !admin) expect(params, key).toContain("Idempotency-Key");
      else expect(params, key).not.toContain("Idempotency-Key");
      for (const [status, answer] of Object.entries<any>(op.responses)) {
        expect(Object.keys(answer.headers ?? {}), `${key} ${status}`).toEqual(
          expect.arrayContaining(["X-Request-Id", "Server-Timing", "Cache-Control"]),
        );
        if (status !== "304") expect(Object.keys(answer.headers), `${key} ${status}`).toContain("x-d1-bookmark");
        if (status === "429" || status === "503") expect(Object.keys(answer.headers), `${key} ${status}`).toContain("Retry-After");
        if (status === "429")
          expect(Object.keys(answer.headers), `${key} ${status}`).toEqual(
            expect.arrayContaining(["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]),
          );
      }
    }
    for (const key of [
      "post /api/v1/orders",
      "post /api/v1/coupons/issue",
      "post /api/v1/points/use",
      "patch /api/v1/admin/products/{productId}/stock",
    ]) {
      const [method, path] = key.split(" ");
      expect(Object.keys(doc.paths[path!][method!].responses), key).toContain("503");
    }
  });
});
