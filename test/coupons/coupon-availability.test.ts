import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { couponAvailability } from "../../src/coupons/coupon.rules";
import { cachePolicyFor } from "../../src/shared/cache-policy";
import { hopsOf } from "../../src/shared/hops";
import { shardObjectName } from "../../src/sharding/routing";
import { adminHeaders, api, createCoupon, createUser, errorCode, type ApiResponse } from "../support/http";
import { JWT_SECRET, testApp } from "../support/secure-app";
import { createUsers, issue } from "./support";

const cacheOf = (res: ApiResponse) => /cache;desc="(\w+)"/.exec(res.headers.get("server-timing") ?? "")?.[1];
const doCalls = (res: ApiResponse) => Number(/(?:^|,\s*)do;desc="(\d+) calls?/.exec(res.headers.get("server-timing") ?? "")?.[1] ?? 0);

/**
 * Reads that never share an edge-cache bucket: each request sees a clock a second later than the one
 * before, so every read asks the objects (the edge cache itself is tested on its own below).
 */
function freshReader() {
  let t = Date.now();
  const app = testApp({}, { now: () => (t += 1_000) });
  return (couponId: number) => app.get(`/api/v1/coupons/${couponId}`);
}

const iso = (ms: number) => new Date(ms).toISOString();

describe("couponAvailability (the sale page's status rule)", () => {
  it("is UPCOMING before the window, ENDED from its end, SOLD_OUT when nothing remains, else OPEN; remaining never below 0", () => {
    const c = { quantity: 10, issued: 0, startsAt: 1_000, endsAt: 2_000 };
    expect(couponAvailability(c, 999)).toEqual({ remaining: 10, status: "UPCOMING" });
    expect(couponAvailability(c, 1_000)).toEqual({ remaining: 10, status: "OPEN" });
    expect(couponAvailability({ ...c, issued: 10 }, 1_500)).toEqual({ remaining: 0, status: "SOLD_OUT" });
    expect(couponAvailability({ ...c, issued: 12 }, 1_500)).toEqual({ remaining: 0, status: "SOLD_OUT" });
    expect(couponAvailability({ ...c, issued: 10 }, 2_000)).toEqual({ remaining: 0, status: "ENDED" });
    expect(couponAvailability({ ...c, issued: 3 }, 5_000)).toEqual({ remaining: 7, status: "ENDED" });
  });
});

describe("GET /api/v1/coupons/{couponId}", () => {
  it("answers the coupon with quantity, issued, remaining and its status, in each status", async () => {
    const read = freshReader();
    const now = Date.now();
    const open = await createCoupon({ name: "Winter sale", discountType: "RATE", discountValue: 15, quantity: 3 });
    const upcoming = await createCoupon({ quantity: 5, startsAt: iso(now + 86_400_000), endsAt: iso(now + 2 * 86_400_000) });
    const ended = await createCoupon({ quantity: 5, startsAt: iso(now - 2 * 86_400_000), endsAt: iso(now - 86_400_000) });
    const [a, b, c] = [await createUser(), await createUser(), await createUser()];
    expect((await issue(open, a)).status).toBe(201);

    const res = await read(open);
    expect(res.status).toBe(200);
    const coupon = (await env.DB.prepare("SELECT starts_at, ends_at FROM coupons WHERE id = ?")
      .bind(open)
      .first<{ starts_at: number; ends_at: number }>())!;
    expect(res.body.data).toEqual({
      couponId: open,
      couponTitle: "Winter sale",
      discountType: "RATE",
      discountValue: 15,
      quantity: 3,
      issued: 1,
      remaining: 2,
      startsAt: iso(coupon.starts_at),
      endsAt: iso(coupon.ends_at),
      status: "OPEN",
    });
    expect((await read(upcoming)).body.data).toMatchObject({ quantity: 5, issued: 0, remaining: 5, status: "UPCOMING" });
    expect((await read(ended)).body.data).toMatchObject({ quantity: 5, issued: 0, remaining: 5, status: "ENDED" });
    expect((await issue(open, b)).status).toBe(201);
    expect((await issue(open, c)).status).toBe(201);
    expect((await read(open)).body.data).toMatchObject({ quantity: 3, issued: 3, remaining: 0, status: "SOLD_OUT" });
    // A quantity raised through the object shows at once (the object's quantity, not D1's projection of it).
    expect((await api.patch(`/api/v1/admin/coupons/${open}`, { quantity: 5 }, adminHeaders)).status).toBe(200);
    expect((await read(open)).body.data).toMatchObject({ quantity: 5, issued: 3, remaining: 2, status: "OPEN" });
  });

  it("answers 404 COUPON_NOT_FOUND for an unknown coupon and 400 for a bad id, without the objects", async () => {
    const read = freshReader();
    const missing = await read(9_999_999);
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe("COUPON_NOT_FOUND");
    expect(doCalls(missing)).toBe(0);
    expect(missing.headers.get("cache-control")).toBe("no-store");
    const bad = await api.get("/api/v1/coupons/abc");
    expect(bad.status).toBe(400);
    expect(errorCode(bad)).toBe("INVALID_COUPON_ID");
  });

  it("is public: no token needed when JWT_SECRET is set (a user's own coupon list still needs one)", async () => {
    const couponId = await createCoupon({ quantity: 2 });
    const app = testApp({ JWT_SECRET });
    const res = await app.get(`/api/v1/coupons/${couponId}`);
    expect(res.status).toBe(200);
    expect(res.body.data.remaining).toBe(2);
    expect((await app.get(`/api/v1/coupons?userId=${await createUser()}`)).status).toBe(401);
  });

  it("is edge-cached for at most a second: a repeat within the second is a hit in 0 hops, the next second asks the objects again", async () => {
    const couponId = await createCoupon({ quantity: 4 });
    let t = Math.ceil(Date.now() / 1_000) * 1_000 + 10_000; // the start of a second nobody else reads in
    const app = testApp({}, { now: () => t });
    const first = await app.get(`/api/v1/coupons/${couponId}`);
    expect(cacheOf(first)).toBe("miss");
    expect(first.headers.get("cache-control")).toBe("public, max-age=0, s-maxage=1");
    expect(hopsOf(first.headers.get("server-timing"))).toBe(2); // D1 (the definition), then the shards in parallel
    expect((await issue(couponId, await createUser())).status).toBe(201);
    t += 999;
    const again = await app.get(`/api/v1/coupons/${couponId}`);
    expect(cacheOf(again)).toBe("hit");
    expect(hopsOf(again.headers.get("server-timing"))).toBe(0);
    expect(again.body.data.remaining).toBe(4);
    t += 1;
    const next = await app.get(`/api/v1/coupons/${couponId}`);
    expect(cacheOf(next)).toBe("miss");
    expect(next.body.data).toMatchObject({ issued: 1, remaining: 3 });
    expect(cachePolicyFor(`/api/v1/coupons/${couponId}`, t, "Asia/Seoul", "0").ttlS).toBe(1);
  });

  it("during a storm of issuances never shows remaining below 0, keeps issued + remaining = quantity, and ends SOLD_OUT at 0", async () => {
    const quantity = 40;
    const couponId = await createCoupon({ quantity });
    const users = await createUsers(100);
    const read = freshReader();
    const reads: ApiResponse[] = [];
    let storming = true;
    const poller = (async () => {
      while (storming) reads.push(await read(couponId));
    })();
    const results = await Promise.all(users.map((u) => issue(couponId, u)));
    storming = false;
    await poller;
    reads.push(await read(couponId));
    expect(results.filter((r) => r.status === 201)).toHaveLength(quantity);
    expect(reads.length).toBeGreaterThan(1);
    let lastIssued = 0;
    for (const r of reads) {
      expect(r.status).toBe(200);
      const d = r.body.data;
      expect(d.remaining).toBeGreaterThanOrEqual(0);
      expect(d.issued + d.remaining).toBe(quantity);
      expect(d.issued, "issued never goes back").toBeGreaterThanOrEqual(lastIssued);
      lastIssued = d.issued;
      expect(d.status).toBe(d.remaining === 0 ? "SOLD_OUT" : "OPEN");
    }
    expect(reads.at(-1)!.body.data).toMatchObject({ quantity, issued: quantity, remaining: 0, status: "SOLD_OUT" });
  });

  it("sums a sharded coupon's shards (K=4) in one parallel fan-out", async () => {
    const K = 4;
    const quantity = 30;
    const couponId = await createCoupon({ quantity, shards: K });
    const users = await createUsers(12);
    const issued = await Promise.all(users.map((u) => issue(couponId, u)));
    expect(issued.every((r) => r.status === 201)).toBe(true);
    const states = await Promise.all(
      Array.from({ length: K }, (_, s) => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(shardObjectName(couponId, s))).state()),
    );
    expect(states.filter((s) => s.issued > 0).length, "the users' homes spread over more than one shard").toBeGreaterThan(1);
    expect(states.reduce((n, s) => n + s.issued, 0)).toBe(12);
    const res = await freshReader()(couponId);
    expect(res.body.data).toMatchObject({ quantity, issued: 12, remaining: quantity - 12, status: "OPEN" });
    expect(doCalls(res)).toBe(K);
    expect(hopsOf(res.headers.get("server-timing"))).toBe(2);
  });
});
