import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { edgeCache, INFLIGHT_WAIT_MS, type EdgeCacheEnv } from "../../src/shared/edge-cache";
import { HopMeter } from "../../src/shared/hops";
import { bestSellerPeriod, cacheKeyOf, cachePolicyFor, changesCatalogue } from "../../src/shared/cache-policy";
import { hopsOf } from "../../src/shared/hops";
import { adminHeaders, api, call, createProduct, createUser, errorCode, type ApiResponse } from "../support/http";
import { testApp } from "../support/secure-app";

const hops = (res: ApiResponse) => hopsOf(res.headers.get("server-timing"));
const cacheOf = (res: ApiResponse) => /cache;desc="(\w+)"/.exec(res.headers.get("server-timing") ?? "")?.[1];

describe("public catalogue reads at the edge", () => {
  it("carry Cache-Control and an ETag; a repeat comes from caches.default in 0 hops; If-None-Match gets 304", async () => {
    const p = await createProduct(1_200, 4, "cached");
    const first = await api.get(`/api/v1/products/${p}`);
    expect(first.status).toBe(200);
    expect(cacheOf(first)).toBe("miss");
    expect(hops(first)).toBe(1);
    expect(first.headers.get("cache-control")).toBe("public, max-age=0, s-maxage=5, stale-while-revalidate=25");
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);

    const again = await api.get(`/api/v1/products/${p}`);
    expect(cacheOf(again)).toBe("hit");
    expect(hops(again)).toBe(0);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("etag")).toBe(etag);
    expect(again.headers.get("cache-control")).toBe(first.headers.get("cache-control"));
    expect(again.headers.get("x-request-id")).not.toBe(first.headers.get("x-request-id"));
    // A hit opened no D1 session, so it hands out no (old) bookmark.
    expect(first.headers.get("x-d1-bookmark")).toBeTruthy();
    expect(again.headers.get("x-d1-bookmark")).toBeNull();
    const head = await call("HEAD", `/api/v1/products/${p}`);
    expect(head.status).toBe(200);
    expect(head.body).toBeNull();
    expect(head.headers.get("etag")).toBe(etag);

    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const revalidated = await api.get(`/api/v1/products/${p}`, { "if-none-match": inm });
      expect(revalidated.status, inm).toBe(304);
      expect(revalidated.body, inm).toBeNull();
      expect(revalidated.headers.get("etag")).toBe(etag);
    }
    expect((await api.get(`/api/v1/products/${p}`, { "if-none-match": '"stale"' })).status).toBe(200);
    // A miss revalidates too: a list never read before, with the tag a client kept.
    const list = await api.get("/api/v1/products?page=0&size=3");
    const coldInm = await testApp({}, { now: () => Date.now() + 60_000 }).get("/api/v1/products?page=0&size=3", {
      "if-none-match": list.headers.get("etag")!,
    });
    expect(coldInm.status).toBe(304);
  });

  it("shows an admin stock change on the next read here (the write bumps this data centre's generation)", async () => {
    const p = await createProduct(900, 5);
    expect((await api.get(`/api/v1/products/${p}`)).body.data.stock).toBe(5);
    expect(cacheOf(await api.get(`/api/v1/products/${p}`))).toBe("hit");
    const patched = await api.patch(`/api/v1/admin/products/${p}/stock`, { delta: 7 }, adminHeaders);
    expect(patched.status).toBe(200);
    const after = await api.get(`/api/v1/products/${p}`);
    expect(cacheOf(after)).toBe("miss");
    expect(after.body.data.stock).toBe(12);
  });

  it("shows a change made behind the API once the 5 s bucket turns, and not before", async () => {
    let clock = Math.ceil(Date.now() / 5_000) * 5_000 + 10_000; // the start of a bucket nobody used yet
    const app = testApp({}, { now: () => clock });
    const p = await createProduct(800, 3, "old name");
    expect((await app.get(`/api/v1/products/${p}`)).body.data.productName).toBe("old name");
    await env.DB.prepare("UPDATE products SET name = 'new name' WHERE id = ?").bind(p).run();
    clock += 4_999;
    const stale = await app.get(`/api/v1/products/${p}`);
    expect(cacheOf(stale)).toBe("hit");
    expect(stale.body.data.productName).toBe("old name");
    clock += 1;
    expect((await app.get(`/api/v1/products/${p}`)).body.data.productName).toBe("new name");
  });

  it("lets concurrent misses of one key share a single D1 read", async () => {
    const p = await createProduct(600, 9);
    const burst = await Promise.all(Array.from({ length: 20 }, () => api.get(`/api/v1/products/${p}`)));
    expect(burst.every((r) => r.status === 200 && r.body.data.stock === 9)).toBe(true);
    expect(burst.map(hops).filter((h) => h === 1)).toHaveLength(1);
    expect(burst.filter((r) => cacheOf(r) === "hit")).toHaveLength(19);
    expect(new Set(burst.map((r) => r.headers.get("etag"))).size).toBe(1);
  });

  it("skips the lookup for a request with x-d1-bookmark (it asked for at least that state)", async () => {
    const userId = await createUser(0);
    const p = await createProduct(700, 2);
    await api.get(`/api/v1/products/${p}`);
    const bookmark = (await api.get(`/api/v1/points?userId=${userId}`)).headers.get("x-d1-bookmark")!;
    const fresh = await api.get(`/api/v1/products/${p}`, { "x-d1-bookmark": bookmark });
    expect(cacheOf(fresh)).toBe("bypass");
    expect(hops(fresh)).toBe(1);
    expect(fresh.headers.get("etag")).toBeTruthy();
  });

  it("never caches errors", async () => {
    const missing = await api.get("/api/v1/products/987650");
    expect(errorCode(missing)).toBe("PRODUCT_NOT_FOUND");
    expect(missing.headers.get("cache-control")).toBe("no-store");
    expect(cacheOf(await api.get("/api/v1/products/987650"))).toBe("miss");
    const bad = await api.get("/api/v1/products?size=1000");
    expect(bad.status).toBe(400);
    expect(bad.headers.get("cache-control")).toBe("no-store");
  });
});

describe("misses in flight", () => {
  /**
   * The middleware over an origin whose first answer never comes (its client went away and the
   * runtime never resumed it), with a clock and timers the test drives.
   */
  function originThatHangsOnce() {
    let now = Date.now();
    const waits: { ms: number; fire: () => void }[] = [];
    let release: () => void = () => {};
    const hung = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const app = new Hono<EdgeCacheEnv>();
    app.use("*", async (c, next) => {
      c.set("meter", new HopMeter());
      c.set("config", { businessTimeZone: "Asia/Seoul" });
      c.set("requestId", crypto.randomUUID());
      await next();
      c.header("x-cache", c.var.meter.cache ?? "");
    });
    app.use("*", edgeCache({ now: () => now, wait: (ms) => new Promise<void>((fire) => waits.push({ ms, fire })) }));
    app.get("/api/v1/products/:id", async (c) => {
      const call = ++calls;
      if (call === 1) await hung;
      return c.json({ call });
    });
    return {
      app,
      waits,
      calls: () => calls,
      advance: (ms: number) => (now += ms),
      release,
    };
  }
  const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

  it("wait for the first one at most INFLIGHT_WAIT_MS, then read for themselves: a miss that never finishes cannot wedge its key", async () => {
    const o = originThatHangsOnce();
    const url = `http://shop.test/api/v1/products/1?k=${crypto.randomUUID()}`;
    const first = o.app.request(url);
    await flush();
    expect(o.calls()).toBe(1);
    const second = o.app.request(url);
    await flush();
    expect(
      o.waits.map((w) => w.ms),
      "the second waits for the first, with a deadline",
    ).toEqual([INFLIGHT_WAIT_MS]);
    expect(o.calls()).toBe(1);
    o.waits[0]!.fire();
    const res = await second;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ call: 2 });
    expect(res.headers.get("x-cache")).toBe("miss");
    // It took the key over and stored its answer: the next request is a plain hit.
    const third = await o.app.request(url);
    expect(await third.json()).toEqual({ call: 2 });
    expect(third.headers.get("x-cache")).toBe("hit");
    expect(o.calls()).toBe(2);
    o.release();
    expect((await first).status).toBe(200);
  });

  it("a miss that arrives after the first one's deadline does not wait at all", async () => {
    const o = originThatHangsOnce();
    const url = `http://shop.test/api/v1/products/2?k=${crypto.randomUUID()}`;
    const first = o.app.request(url);
    await flush();
    o.advance(INFLIGHT_WAIT_MS);
    const late = await o.app.request(url);
    expect(await late.json()).toEqual({ call: 2 });
    expect(o.waits).toEqual([]);
    o.release();
    await first;
  });
});

describe("user-specific answers", () => {
  it("are private, no-store: balances, history, coupons, orders, writes, admin", async () => {
    const userId = await createUser(1_000);
    const p = await createProduct(100, 5);
    const answers = [
      await api.get(`/api/v1/points?userId=${userId}`),
      await api.get(`/api/v1/points/history?userId=${userId}`),
      await api.get(`/api/v1/coupons?userId=${userId}`),
      await api.post("/api/v1/points/charge", { userId, amount: 5 }),
      await api.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] }),
      await api.get("/api/v1/points?userId=987651"),
      await api.post("/api/v1/admin/users", { name: "x" }, adminHeaders),
    ];
    for (const res of answers) {
      expect(res.headers.get("cache-control")).toBe("private, no-store");
      expect(res.headers.get("etag")).toBeNull();
    }
  });
});

describe("cache policy", () => {
  const TZ = "Asia/Seoul";
  const kst = (iso: string) => Date.parse(`${iso}+09:00`);

  it("caches best sellers until the next change of period: 00:30 refresh, then business midnight", () => {
    const early = cachePolicyFor("/api/v1/products/best", kst("2026-12-01T00:10:00"), TZ, "0");
    expect(early.ttlS).toBe(20 * 60);
    expect(early.cacheControl).toBe(`public, max-age=0, s-maxage=${20 * 60}`);
    const late = cachePolicyFor("/api/v1/products/best", kst("2026-12-01T00:30:00"), TZ, "0");
    expect(late.version).not.toBe(early.version);
    expect(late.ttlS).toBe(23.5 * 3600);
    expect(cachePolicyFor("/api/v1/products/best", kst("2026-12-01T23:59:59"), TZ, "7").version).toBe(late.version);
    expect(bestSellerPeriod(kst("2026-12-02T00:00:00"), TZ).id).toBe("2026-12-02.early");
  });

  it("versions the other reads by a 5 s bucket and the generation, over a normalised query", () => {
    const a = cachePolicyFor("/api/v1/products", 10_000, TZ, "1");
    expect(cachePolicyFor("/api/v1/products", 14_999, TZ, "1").version).toBe(a.version);
    expect(cachePolicyFor("/api/v1/products", 15_000, TZ, "1").version).not.toBe(a.version);
    expect(cachePolicyFor("/api/v1/products", 10_000, TZ, "2").version).not.toBe(a.version);
    expect(cacheKeyOf(new URL("http://x/api/v1/products?size=5&page=0"), "v")).toBe(
      cacheKeyOf(new URL("http://x/api/v1/products?page=0&size=5"), "v"),
    );
  });

  it("keys an answer under the request's own origin, never a made-up host (Cloudflare's advice for cache keys)", () => {
    const key = cacheKeyOf(new URL("https://shop.example.com/api/v1/products/7?b=2&a=1"), "t1.g2");
    expect(key).toBe("https://shop.example.com/api/v1/products/7?a=1&b=2&__v=t1.g2");
    expect(cacheKeyOf(new URL("https://staging.example.com/api/v1/products/7?a=1&b=2"), "t1.g2")).not.toBe(key);
  });

  it("counts admin product changes, orders, cancels and payments as catalogue changes; charges and coupons not", () => {
    expect(changesCatalogue("PATCH", "/api/v1/admin/products/1/stock")).toBe(true);
    expect(changesCatalogue("POST", "/api/v1/admin/products")).toBe(true);
    expect(changesCatalogue("POST", "/api/v1/orders")).toBe(true);
    expect(changesCatalogue("POST", "/api/v1/orders/5/cancel")).toBe(true);
    expect(changesCatalogue("POST", "/api/v1/points/use")).toBe(true);
    expect(changesCatalogue("POST", "/api/v1/points/charge")).toBe(false);
    expect(changesCatalogue("POST", "/api/v1/coupons/issue")).toBe(false);
    expect(changesCatalogue("GET", "/api/v1/orders/5")).toBe(false);
  });
});
