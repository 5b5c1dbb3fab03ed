import { describe, expect, it } from "vitest";
import { encodeCursor } from "../../src/shared/cursor";
import { adminHeaders, api, createCoupon, createProduct, createUser, errorCode, type ApiResponse } from "../support/http";
import { issue } from "../coupons/support";

/** Every page of an admin list from the newest, following nextCursor; the ids in the order served. */
async function allIds(path: string, key: "coupons" | "products", idKey: "couponId" | "productId", limit: number): Promise<number[]> {
  const ids: number[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const res: ApiResponse = await api.get(`${path}?limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`, adminHeaders);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    ids.push(...res.body.data[key].map((r: Record<string, number>) => r[idKey]));
    cursor = res.body.data.nextCursor;
    if (!cursor) break;
  }
  return ids;
}

describe("admin lists for the operator console (cursor paged, newest first)", () => {
  it("GET /admin/coupons lists every coupon with quantity, issued, remaining and status", async () => {
    const now = Date.now();
    const sold = await createCoupon({ name: "sold", quantity: 1 });
    const upcoming = await createCoupon({
      name: "later",
      quantity: 3,
      shards: 2,
      startsAt: new Date(now + 86_400_000).toISOString(),
      endsAt: new Date(now + 2 * 86_400_000).toISOString(),
    });
    const open = await createCoupon({ name: "open", quantity: 5 });
    expect((await issue(sold, await createUser())).status).toBe(201);
    expect((await issue(open, await createUser())).status).toBe(201);
    const res = await api.get("/api/v1/admin/coupons?limit=3", adminHeaders);
    expect(res.status).toBe(200);
    const rows = res.body.data.coupons;
    expect(rows.map((r: { couponId: number }) => r.couponId)).toEqual([open, upcoming, sold]);
    expect(rows[0]).toMatchObject({ name: "open", quantity: 5, issued: 1, remaining: 4, status: "OPEN", shards: 1 });
    expect(rows[1]).toMatchObject({ name: "later", quantity: 3, issued: 0, remaining: 3, status: "UPCOMING", shards: 2 });
    expect(rows[2]).toMatchObject({ name: "sold", quantity: 1, issued: 1, remaining: 0, status: "SOLD_OUT" });
    const all = await allIds("/api/v1/admin/coupons", "coupons", "couponId", 2);
    expect(all.slice(0, 3)).toEqual([open, upcoming, sold]);
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort((a, b) => b - a)).toEqual(all);
  });

  it("GET /admin/products pages every product newest first, nothing repeated or skipped", async () => {
    const made = [await createProduct(100, 1, "a"), await createProduct(200, 2, "b"), await createProduct(300, 3, "c")];
    const all = await allIds("/api/v1/admin/products", "products", "productId", 2);
    expect(all.slice(0, 3)).toEqual([...made].reverse());
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort((a, b) => b - a)).toEqual(all);
    const first = (await api.get("/api/v1/admin/products?limit=1", adminHeaders)).body.data.products[0];
    expect(first).toMatchObject({ productId: made[2], name: "c", price: 300, stock: 3, stockShards: 1 });
  });

  it("refuses a bad limit or another list's cursor (400) and a missing token (401)", async () => {
    for (const path of ["/api/v1/admin/coupons", "/api/v1/admin/products"]) {
      for (const q of ["limit=0", "limit=101", "cursor=x", `cursor=${encodeCursor(3, "o")}`]) {
        const res = await api.get(`${path}?${q}`, adminHeaders);
        expect(res.status, `${path}?${q}`).toBe(400);
        expect(errorCode(res)).toBe("VALIDATION_FAILED");
      }
      expect((await api.get(path)).status).toBe(401);
    }
  });
});
