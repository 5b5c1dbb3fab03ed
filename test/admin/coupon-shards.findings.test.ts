/** Issue 19 finding 3: a shard-count raise that failed part-way is repaired by retrying the same call. */
import { describe, expect, it, onTestFinished } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import { homeShard, shardObjectName } from "../../src/sharding/routing";
import { adminHeaders, api, createCoupon, createUser } from "../support/http";

const shardOf = (couponId: number, shard: number) => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(shardObjectName(couponId, shard)));

describe("finding 3: PUT /admin/coupons/{id}/shards when shard 0's call fails", () => {
  it("a retry of the same raise finishes it: every shard, shard 0 included, serves under the new count", async () => {
    const startsAt = Date.now() + 3_000;
    const couponId = await createCoupon({ quantity: 40, startsAt: new Date(startsAt).toISOString() });
    let calls = 0;
    // (RPC calls only methods of the class: the hook goes on the prototype, for shard 0 only.)
    const zero = await runInDurableObject(shardOf(couponId, 0), (instance: CouponIssuer) => instance);
    const real = CouponIssuer.prototype.setShards;
    CouponIssuer.prototype.setShards = async function (this: CouponIssuer, ...args: Parameters<CouponIssuer["setShards"]>) {
      if (this === zero && calls++ === 0) throw new Error("shard 0 unreachable");
      return real.apply(this, args);
    };
    onTestFinished(() => {
      CouponIssuer.prototype.setShards = real;
    });
    const failed = await api.put(`/api/v1/admin/coupons/${couponId}/shards`, { shards: 4 }, adminHeaders);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    const retried = await api.put(`/api/v1/admin/coupons/${couponId}/shards`, { shards: 4 }, adminHeaders);
    expect(retried.status).toBe(200);
    const states = await Promise.all([0, 1, 2, 3].map((s) => shardOf(couponId, s).state()));
    expect(
      states.map((s) => s.shards),
      "every shard under K = 4",
    ).toEqual([4, 4, 4, 4]);
    expect(states.reduce((n, s) => n + s.held, 0)).toBe(40);
    const d1 = await env.DB.prepare("SELECT shards FROM coupons WHERE id = ?").bind(couponId).first<number>("shards");
    expect(d1).toBe(4);
    // Once the window opens, a user of every home shard is served.
    await new Promise((r) => setTimeout(r, Math.max(0, startsAt - Date.now() + 20)));
    const homes = new Set<number>();
    while (homes.size < 4) {
      const u = await createUser();
      const home = homeShard(u, 4);
      if (homes.has(home)) continue;
      homes.add(home);
      const res = await api.post("/api/v1/coupons/issue", { userId: u, couponId });
      expect(res.status, `user homed on shard ${home}: ${JSON.stringify(res.body)}`).toBe(201);
    }
  });
});
