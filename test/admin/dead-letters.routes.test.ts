import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { encodeCursor } from "../../src/shared/cursor";
import { adminHeaders, api, errorCode } from "../support/http";

/** `n` dead letters straight in D1; their ids, oldest first. */
async function seedLetters(n: number): Promise<number[]> {
  const rows = await env.DB.batch(
    Array.from({ length: n }, (_, i) =>
      env.DB.prepare(
        "INSERT INTO dead_letters (event_id, type, payload, attempts, created_at) VALUES (?, 'order.completed', ?, 5, ?) RETURNING id",
      ).bind(crypto.randomUUID(), JSON.stringify({ n: i }), Date.now()),
    ),
  );
  return rows.map((r) => (r.results[0] as { id: number }).id);
}

const list = (query: string) => api.get(`/api/v1/admin/dead-letters?${query}`, adminHeaders);

describe("GET /api/v1/admin/dead-letters (the API's one list convention: cursor and nextCursor)", () => {
  it("pages oldest first with cursor/nextCursor, nothing repeated or skipped, nextCursor null on the last page", async () => {
    const before = (await list("limit=100")).body.data.deadLetters.map((d: { id: number }) => d.id);
    const ids = [...before, ...(await seedLetters(5))];
    const served: number[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const res = await list(`limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      sizes.push(res.body.data.deadLetters.length);
      served.push(...res.body.data.deadLetters.map((d: { id: number }) => d.id));
      cursor = res.body.data.nextCursor;
    } while (cursor && sizes.length < 50);
    expect(served).toEqual(ids);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(ids.length);
    expect(sizes.slice(0, -1).every((n) => n === 2)).toBe(true);
    expect(sizes.at(-1)).toBeGreaterThan(0);
  });

  it("still takes the deprecated afterId for one release (the same page as the cursor), but not both at once", async () => {
    const ids = await seedLetters(3);
    const byAfterId = await list(`afterId=${ids[0]}&limit=2`);
    const byCursor = await list(`cursor=${encodeCursor(ids[0]!, "dl")}&limit=2`);
    expect(byAfterId.status).toBe(200);
    expect(byAfterId.body.data).toEqual(byCursor.body.data);
    expect(byAfterId.body.data.deadLetters.map((d: { id: number }) => d.id)).toEqual([ids[1], ids[2]]);
    const both = await list(`afterId=${ids[0]}&cursor=${encodeCursor(ids[0]!, "dl")}`);
    expect(both.status).toBe(400);
    expect(errorCode(both)).toBe("VALIDATION_FAILED");
    const doc = (await api.get("/openapi.json")).body;
    const params = doc.paths["/api/v1/admin/dead-letters"].get.parameters as { name: string; deprecated?: boolean }[];
    expect(params.find((p) => p.name === "afterId")?.deprecated).toBe(true);
    expect(params.find((p) => p.name === "cursor")?.deprecated).toBeUndefined();
  });

  it("answers 400 for a cursor this list did not issue", async () => {
    for (const cursor of ["nope", encodeCursor(1), encodeCursor(1, "o"), encodeCursor(1, "uc")]) {
      const res = await list(`cursor=${cursor}`);
      expect(res.status, cursor).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
  });
});
