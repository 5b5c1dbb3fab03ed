/**
 * Issue 19 findings 1, 2 (coupons) and 4: each test is the sequence the review described, and failed
 * before its fix (the failure output is in the branch's report).
 */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import type { CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import type { IssuanceStore } from "../../src/coupons/issuance.repo";
import { homeShard, shardObjectName } from "../../src/sharding/routing";
import { adminHeaders, api, createCoupon, errorCode } from "../support/http";
import { createUsers, d1State, issue, tally } from "./support";

const shardOf = (couponId: number, shard: number) => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(shardObjectName(couponId, shard)));

async function usersHomed(shard: number, shards: number, n: number): Promise<number[]> {
  const picked: number[] = [];
  while (picked.length < n) for (const u of await createUsers(20)) if (homeShard(u, shards) === shard && picked.length < n) picked.push(u);
  return picked;
}

/** A promise the test opens by hand, and one that says the gated call has arrived. */
function gate() {
  let open!: () => void;
  let arrived!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (arrived = r));
  return { open, opened, reached, arrived };
}

/** Wraps the shard's D1 adapter: `hook(method, args, call)` decides how each call goes. */
async function wrapStore(couponId: number, shard: number, hook: (method: string, call: () => Promise<unknown>) => Promise<unknown>) {
  await runInDurableObject(shardOf(couponId, shard), (instance: CouponIssuer) => {
    const real = instance.store;
    instance.store = new Proxy(real, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => hook(String(prop), () => value.apply(target, args));
      },
    }) as IssuanceStore;
  });
}

describe("finding 1: a false COUPON_SOLD_OUT from prefetch rounds counted in the dryness proof", () => {
  it("K = 3: after a real sell-out and a raise whose units shard 1 takes, shard-2 users still find shard 1's unit", async () => {
    const K = 3;
    const couponId = await createCoupon({ quantity: 6, shards: K }); // 2 units per shard
    const zeros = await usersHomed(0, K, 9);
    const [one, ...ones] = await usersHomed(1, K, 4);
    const [refused, ...late] = await usersHomed(2, K, 4);
    // A real sell-out by users of shards 0 and 1: shard 2 lends both its units and issues nothing...
    for (const u of [...zeros.slice(0, 3), ...ones]) expect((await issue(couponId, u)).status).toBe(201);
    // ...and its first user hears, rightly, that the coupon is sold out.
    expect(errorCode(await issue(couponId, refused!))).toBe("COUPON_SOLD_OUT");
    // The admin raise (+8) lands at shard 0; a shard-1 user borrows (before the fix: one unit plus a batch, so shard 1
    // kept one idle; now the last units stay at shard 0 once the end phase began).
    expect((await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 14 }, adminHeaders)).status).toBe(200);
    expect((await issue(couponId, one!)).status).toBe(201);
    // Shard 0's users take the 6 units shard 0 still holds (8 raised, 2 lent to shard 1).
    expect(tally(await Promise.all(zeros.slice(3).map((u) => issue(couponId, u))))).toEqual({ "201": 6 });
    const held = await Promise.all([0, 1, 2].map((s) => shardOf(couponId, s).state()));
    const free = held.map((s) => s.held - s.issued);
    expect(
      free.reduce((a, b) => a + b, 0),
      `one unit left, not at shard 2: ${JSON.stringify(free)}`,
    ).toBe(1);
    expect(held[2]).toMatchObject({ held: 0, issued: 0 });

    // Shard-2 users one after another (asked at their shard: the Worker keeps its own 1 s sold-out memory):
    // the first gets shard 1's unit; only then is the coupon sold out.
    const answers = [];
    for (const u of late)
      answers.push(await shardOf(couponId, 2).issue({ couponId, userId: u, now: Date.now(), at: { shard: 2, shards: K } }));
    expect(answers.map((a) => (a.ok ? "ok" : a.code))).toEqual(["ok", "COUPON_SOLD_OUT", "COUPON_SOLD_OUT"]);
    const after = await Promise.all([0, 1, 2].map((s) => shardOf(couponId, s).state()));
    expect(after.reduce((n, s) => n + s.issued, 0)).toBe(14);
    expect(
      after.reduce((n, s) => n + s.held, 0),
      "units conserved",
    ).toBe(14);
  });
});

describe("finding 2 (coupons): an idempotent retry refused by its own twin", () => {
  it("a retry with the same Idempotency-Key while the first attempt is being written never replaces the winner's 201", async () => {
    const couponId = await createCoupon({ quantity: 5 });
    const [user] = await createUsers(1);
    const g = gate();
    let projects = 0;
    await wrapStore(couponId, 0, async (method, call) => {
      if (method === "project" && projects++ === 0) {
        g.arrived();
        await g.opened; // the first attempt's D1 write is slow
      }
      return call();
    });
    const headers = { "idempotency-key": "issue-twin-1" };
    const firstAttempt = api.post("/api/v1/coupons/issue", { userId: user, couponId }, headers);
    await g.reached; // the first attempt decided and is writing its row
    const twin = await api.post("/api/v1/coupons/issue", { userId: user, couponId }, headers);
    g.open();
    const first = await firstAttempt;
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    // The twin may not have the answer yet (409 IN_PROGRESS, not stored) or have the winner's; never a refusal of its own.
    if (twin.status !== 201) expect(errorCode(twin)).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
    else expect(twin.body.data).toEqual(first.body.data);
    const retry = await api.post("/api/v1/coupons/issue", { userId: user, couponId }, headers);
    expect(retry.status).toBe(201);
    expect(retry.body.data).toEqual(first.body.data);
    // Without the key (or with another one) the user already has it.
    expect(errorCode(await issue(couponId, user!))).toBe("COUPON_ALREADY_ISSUED");
    expect((await d1State(couponId)).users).toEqual([user]);
  });
});

describe("finding 4: quantity changes and D1's issued <= quantity", () => {
  it("a raise at sell-out: wins on the new units are never failed by D1's CHECK while D1 still has the old quantity", async () => {
    const couponId = await createCoupon({ quantity: 4 });
    const users = await createUsers(12);
    // A sell-out with no loser (so the Worker does not remember "sold out").
    for (const u of users.slice(0, 4)) expect((await issue(couponId, u)).status).toBe(201);
    const g = gate();
    let writes = 0;
    await wrapStore(couponId, 0, async (method, call) => {
      if (method === "updateQuantity" && writes++ === 0) {
        g.arrived();
        await g.opened; // D1 is slow to take the new quantity
      }
      return call();
    });
    const raise = api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 8 }, adminHeaders);
    await g.reached;
    const during = await Promise.all(users.slice(4, 7).map((u) => issue(couponId, u)));
    for (const r of during) expect(r.status, JSON.stringify(r.body)).not.toBe(503);
    g.open();
    expect((await raise).status).toBe(200);
    const after = await Promise.all(users.slice(7).map((u) => issue(couponId, u)));
    for (const r of after) expect(r.status, JSON.stringify(r.body)).not.toBe(503);
    const wins = [...during, ...after].filter((r) => r.status === 201).length;
    expect(wins).toBe(4);
    const d1 = await d1State(couponId);
    expect(d1).toMatchObject({ quantity: 8, issuedQuantity: 8 });
    expect(d1.users).toHaveLength(8);
  });

  it("a late alarm write of an older quantity never leaves D1 behind the object", async () => {
    const couponId = await createCoupon({ quantity: 30 });
    const g = gate();
    let writes = 0;
    await wrapStore(couponId, 0, async (method, call) => {
      if (method !== "updateQuantity") return call();
      const n = writes++;
      if (n === 0) throw new Error("D1 unavailable"); // the cut to 20 is not written: the alarm will
      if (n === 1) {
        g.arrived();
        await g.opened; // the alarm's write of 20 is slow...
      }
      return call();
    });
    expect((await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 20 }, adminHeaders)).status).toBe(200);
    const alarm = runDurableObjectAlarm(shardOf(couponId, 0));
    await g.reached;
    // ...and a newer change lands first.
    expect((await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 25 }, adminHeaders)).status).toBe(200);
    g.open();
    await alarm;
    await runDurableObjectAlarm(shardOf(couponId, 0));
    expect((await shardOf(couponId, 0).state()).quantity).toBe(25);
    expect((await d1State(couponId)).quantity, "D1 has the newest quantity").toBe(25);
  });
});
