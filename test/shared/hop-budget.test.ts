import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { hopsOf } from "../../src/shared/hops";
import { businessDate } from "../../src/shared/clock";
import { api, type ApiResponse, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { createUserCoupon, placeOrder } from "../support/orders";
import { insertPaidOrder } from "../support/sales";
import { assertStockConservation } from "../support/invariants";
import { testApp } from "../support/secure-app";
import { homeShard } from "../../src/sharding/routing";
import { isolateShardCounts, isolateSoldOut } from "../../src/coupons/sold-out";

/**
 * The round-trip budgets of docs/ARCHITECTURE.md §8, pinned per route on its success and
 * refusal paths. The counts come from the `Server-Timing` header the app sends
 * (`hops;desc="N sequential"`): D1 calls and Durable Object calls in sequence,
 * a parallel fan-out counting once, plus what an object reported it waited for.
 * These are deterministic counts, not timings.
 */
const hops = (res: ApiResponse) => hopsOf(res.headers.get("server-timing"));
const issue = (couponId: number, userId: number) => api.post("/api/v1/coupons/issue", { userId, couponId });

afterEach(() => vi.restoreAllMocks());

describe("Server-Timing", () => {
  it("reports calls, durations and the sequential depth, and the request log line carries the same counts", async () => {
    const userId = await createUser(100);
    const spy = vi.spyOn(console, "log");
    const res = await api.get(`/api/v1/points?userId=${userId}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("server-timing")).toMatch(
      /^d1;desc="1 call, 1 rows read, 0 written, 0 write tx";dur=\d+(\.\d)?, hops;desc="1 sequential"$/,
    );
    const line = spy.mock.calls.map((c) => JSON.parse(String(c[0]))).find((l) => l.msg === "request" && l.path === "/api/v1/points");
    expect(line).toMatchObject({ hops: 1, d1Calls: 1, d1RowsRead: 1, d1RowsWritten: 0, d1WriteTx: 0, status: 200 });
    expect((await api.get("/health")).headers.get("server-timing")).toBe('hops;desc="0 sequential"');
  });
});

describe("coupon issue: refusal 1 hop, known sold out 0, win 2", () => {
  it("pins every path", async () => {
    const [a, b, c] = [await createUser(), await createUser(), await createUser()];
    const couponId = await createCoupon({ quantity: 1 });

    const win = await issue(couponId, a);
    expect(win.status).toBe(201);
    expect(hops(win)).toBe(2); // the object decides, then writes the D1 row before answering
    expect(win.headers.get("server-timing")).toContain('do;desc="1 call"');
    expect(win.headers.get("server-timing")).toContain('d1;desc="0 calls (+1 nested)"');

    const again = await issue(couponId, a);
    expect(errorCode(again)).toBe("COUPON_ALREADY_ISSUED");
    expect(hops(again)).toBe(1);

    const soldOut = await issue(couponId, b);
    expect(errorCode(soldOut)).toBe("COUPON_SOLD_OUT");
    expect(hops(soldOut)).toBe(1);

    // This isolate now knows: no round trip at all, for anyone, until the TTL.
    const known = await issue(couponId, c);
    expect(errorCode(known)).toBe("COUPON_SOLD_OUT");
    expect(hops(known)).toBe(0);

    const later = await createCoupon({ startsAt: new Date(Date.now() + 3_600_000).toISOString() });
    const closed = await issue(later, c);
    expect(errorCode(closed)).toBe("COUPON_NOT_ISSUABLE");
    expect(hops(closed)).toBe(1);

    const open = await createCoupon({ quantity: 5 });
    const unknownUser = await issue(open, 987_001);
    expect(errorCode(unknownUser)).toBe("USER_NOT_FOUND");
    expect(hops(unknownUser)).toBe(2); // the D1 write that would have issued it is what finds out
  });
});

describe("sharded coupon issue (K = 8): the same 2 hops for a win at home, +1 round per borrow", () => {
  it("pins the home win, the borrowing win, the proven sold-out and the first call of an isolate", async () => {
    const K = 8;
    const couponId = await createCoupon({ quantity: 16, shards: K }); // 2 units per shard
    const homed = async (shard: number, n: number) => {
      const out: number[] = [];
      while (out.length < n) {
        const u = await createUser();
        if (homeShard(u, K) === shard) out.push(u);
      }
      return out;
    };
    const [a, b, c] = await homed(4, 3);
    const win = await issue(couponId, a!);
    expect(win.status).toBe(201);
    expect(hops(win)).toBe(2); // the home shard decides and writes D1: no sibling is asked
    expect(hops(await issue(couponId, b!))).toBe(2);
    const borrowing = await issue(couponId, c!); // shard 4 is empty: one round of asks to its siblings first
    expect(borrowing.status).toBe(201);
    expect(hops(borrowing)).toBe(3);
    expect(borrowing.headers.get("server-timing")).toContain('do;desc="1 call (+1 nested)"');
    expect(hops(await issue(couponId, a!))).toBe(1); // already issued: the home shard alone

    // The isolate has forgotten the count (a new isolate): shard 0 says K first, then the home shard answers.
    isolateShardCounts.forget(couponId);
    const [d] = await homed(2, 1);
    const first = await issue(couponId, d!);
    expect(first.status).toBe(201);
    expect(hops(first)).toBe(3);
    expect(first.headers.get("server-timing")).toContain('do;desc="2 calls');

    // Drain the rest; then "sold out" is shard 0's word: the call, the claim to shard 0 (and its gathering round
    // if some shard was not drained yet); after it the isolate knows.
    const rest = await Promise.all(Array.from({ length: 12 }, () => createUser()));
    expect((await Promise.all(rest.map((u) => issue(couponId, u)))).filter((r) => r.status === 201)).toHaveLength(12);
    isolateSoldOut.forget(couponId);
    const [e] = await homed(6, 1);
    const soldOut = await issue(couponId, e!);
    expect(errorCode(soldOut)).toBe("COUPON_SOLD_OUT");
    expect(hops(soldOut)).toBeGreaterThanOrEqual(2);
    expect(hops(soldOut)).toBeLessThanOrEqual(3);
    expect(hops(await issue(couponId, e!))).toBe(0);
  });
});

describe("order placement: at most 3 hops, however many lines", () => {
  it("succeeds in 3 with one line and with ten lines and a coupon", async () => {
    const userId = await createUser();
    const products = [];
    for (let i = 0; i < 10; i++) products.push(await createProduct(100 + i, 5));
    const one = await placeOrder(userId, [[products[0]!, 1]]);
    expect(one.status).toBe(201);
    expect(hops(one)).toBe(3);

    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "RATE", discountValue: 10 }));
    const ten = await placeOrder(
      userId,
      products.map((p) => [p, 2] as [number, number]),
      uc,
    );
    expect(ten.status).toBe(201);
    expect(ten.body.data).toMatchObject({ itemsAmount: 2 * (1000 + 45), discountAmount: 209, totalAmount: 2090 - 209 });
    expect(hops(ten)).toBe(3);
    expect(ten.headers.get("server-timing")).toContain('do;desc="10 calls"');
    await assertStockConservation(products, 5);
  });

  it("refuses out-of-stock in 3 (one line, or several with releases), and invalid input in 2", async () => {
    const userId = await createUser();
    const [a, b] = [await createProduct(100, 1), await createProduct(100, 5)];
    const single = await placeOrder(userId, [[a, 2]]);
    expect(errorCode(single)).toBe("INSUFFICIENT_STOCK");
    expect(hops(single)).toBe(3);
    const multi = await placeOrder(userId, [
      [a, 2],
      [b, 1],
    ]);
    expect(errorCode(multi)).toBe("INSUFFICIENT_STOCK");
    expect(hops(multi)).toBe(3); // the release of b and the FAILED mark go out together
    const unknown = await placeOrder(userId, [
      [a, 1],
      [987_002, 1],
    ]);
    expect(errorCode(unknown)).toBe("PRODUCT_NOT_FOUND");
    expect(hops(unknown)).toBe(2);
    const nobody = await placeOrder(987_003, [[a, 1]]);
    expect(errorCode(nobody)).toBe("USER_NOT_FOUND");
    expect(hops(nobody)).toBe(2);
    await assertStockConservation([a, b], [1, 5]);
  });
});

describe("payment 2 hops, charge 1", () => {
  it("pays in 2; a short balance is refused in 1, an unpayable order in 2", async () => {
    const rich = await createUser(10_000);
    const poor = await createUser(10);
    const p = await createProduct(1_000, 10);
    const paidFor = (await placeOrder(rich, [[p, 2]])).body.data.orderId;
    const pay = await api.post("/api/v1/points/use", { userId: rich, orderId: paidFor });
    expect(pay.status).toBe(200);
    expect(pay.body.data).toEqual({ orderId: paidFor, status: "PAID", paidAmount: 2_000, balance: 8_000 });
    expect(hops(pay)).toBe(2);

    const again = await api.post("/api/v1/points/use", { userId: rich, orderId: paidFor });
    expect(errorCode(again)).toBe("ORDER_NOT_PAYABLE");
    expect(hops(again)).toBe(2);

    const short = (await placeOrder(poor, [[p, 1]])).body.data.orderId;
    const refused = await api.post("/api/v1/points/use", { userId: poor, orderId: short });
    expect(errorCode(refused)).toBe("INSUFFICIENT_BALANCE");
    expect(hops(refused)).toBe(1);
    await assertStockConservation([p], 10);
  });

  it("charges in 1, with or without an Idempotency-Key; a keyed replay costs 2", async () => {
    const userId = await createUser(0);
    const plain = await api.post("/api/v1/points/charge", { userId, amount: 100 });
    expect(hops(plain)).toBe(1);
    const keyed = await api.post("/api/v1/points/charge", { userId, amount: 100 }, { "idempotency-key": "hop-1" });
    expect(keyed.body.data.balance).toBe(200);
    expect(hops(keyed)).toBe(1);
    const replay = await api.post("/api/v1/points/charge", { userId, amount: 100 }, { "idempotency-key": "hop-1" });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(hops(replay)).toBe(2); // the batch that finds the key taken, then the read of its answer
    const nobody = await api.post("/api/v1/points/charge", { userId: 987_004, amount: 100 });
    expect(errorCode(nobody)).toBe("USER_NOT_FOUND");
    expect(hops(nobody)).toBe(1);
  });
});

describe("write limits on (RATE_LIMIT_WRITES_PER_MINUTE, RATE_LIMIT_IP_WRITES_PER_MINUTE > 0)", () => {
  it("cost a write no hop: the [[ratelimits]] bindings count in the serving location, no object is called", async () => {
    const userId = await createUser(0);
    const limited = testApp({ RATE_LIMIT_WRITES_PER_MINUTE: "60", RATE_LIMIT_IP_WRITES_PER_MINUTE: "600" });
    const res = await limited.post("/api/v1/points/charge", { userId, amount: 10 });
    expect(res.status).toBe(200);
    expect(hopsOf(res.headers.get("server-timing"))).toBe(1);
    expect(res.headers.get("server-timing")).not.toContain("do;");
  });
});

describe("catalogue and ranking reads: 1 hop", () => {
  it("lists, shows one product, today's ranking and the best sellers in one round trip each", async () => {
    const userId = await createUser();
    const p = await createProduct(500, 7);
    for (const path of ["/api/v1/products?page=0&size=5", `/api/v1/products/${p}`, "/api/v1/products/top?size=5"]) {
      const res = await api.get(path);
      expect(res.status, path).toBe(200);
      expect(hops(res), path).toBe(1);
      // The repeat is served by the edge cache: no round trip at all.
      const again = await api.get(path);
      expect(again.headers.get("server-timing"), path).toContain('cache;desc="hit"');
      expect(hops(again), path).toBe(0);
    }
    // Best sellers read today's snapshot; the day's first reader without one builds it (cold path).
    await insertPaidOrder(userId, Date.now() - 2 * 86_400_000, [{ productId: p, quantity: 3 }]);
    const first = await api.get("/api/v1/products/best");
    expect(first.status).toBe(200);
    // Sending the bookmark back skips the edge cache (read-your-writes), so this reads the snapshot.
    const best = await api.get("/api/v1/products/best", { "x-d1-bookmark": first.headers.get("x-d1-bookmark")! });
    expect(best.body.data.bestSellers.map((b: { productId: number }) => b.productId)).toContain(p);
    expect(hops(best)).toBe(1);
    expect(hops(await api.get("/api/v1/products/best"))).toBe(0);
    const snapshot = await env.DB.prepare("SELECT count(*) AS n FROM best_seller_snapshots WHERE business_date = ?")
      .bind(businessDate(Date.now(), "Asia/Seoul"))
      .first<number>("n");
    expect(snapshot).toBeGreaterThan(0);
  });
});
