import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { abortAllDurableObjects, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import type { CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import { homeShard, shardObjectName } from "../../src/sharding/routing";
import type { GiveRequest, PushRequest, SiblingPort } from "../../src/sharding/transfer";
import { MAX_BORROW_ROUNDS } from "../../src/sharding/balancer";
import { adminHeaders, api, createCoupon, errorCode } from "../support/http";
import { createUsers, d1State, issue, tally } from "./support";

const K = 8;
const shardOf = (couponId: number, shard: number) => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(shardObjectName(couponId, shard)));
const states = (couponId: number, shards = K) => Promise.all(Array.from({ length: shards }, (_, s) => shardOf(couponId, s).state()));

/** Runs every shard's alarm until no shard has anything left to finish (open transfers, unsynced rows). */
async function settle(couponId: number, shards = K) {
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: shards }, (_, s) => runDurableObjectAlarm(shardOf(couponId, s))));
    const all = await states(couponId, shards);
    if (all.every((s) => s.openTransfers === 0 && s.unsynced === 0)) return all;
  }
  return states(couponId, shards);
}

/**
 * The sharded invariants: units are conserved over the shards (sum held = quantity),
 * nothing is in flight, every issuance sits on its user's home shard, exactly once,
 * and D1 holds exactly those rows with issued_quantity their count.
 */
async function assertShardedExact(couponId: number, quantity: number, winners: number[]) {
  const all = await settle(couponId);
  expect(
    all.reduce((n, s) => n + s.held, 0),
    "units conserved over the shards",
  ).toBe(quantity);
  expect(
    all.every((s) => s.openTransfers === 0),
    "no transfer left open",
  ).toBe(true);
  for (const s of all) {
    expect(s.issued).toBe(s.users.length);
    expect(s.issued).toBeLessThanOrEqual(s.held);
    for (const u of s.users) expect(homeShard(u, K), `user ${u} issued by its home shard`).toBe(s.shard);
  }
  const issuedByShards = all.flatMap((s) => s.users).sort((a, b) => a - b);
  expect(issuedByShards).toEqual([...winners].sort((a, b) => a - b));
  const d1 = await d1State(couponId);
  expect(d1.users).toEqual(issuedByShards);
  expect(d1.issuedQuantity).toBe(winners.length);
  expect(d1.events).toBe(winners.length);
  return all;
}

/** `n` existing users whose home shard (of K) is in `shards`. */
async function usersHomedTo(shards: number[], n: number): Promise<number[]> {
  const picked: number[] = [];
  while (picked.length < n) {
    for (const u of await createUsers(100)) if (shards.includes(homeShard(u, K)) && picked.length < n) picked.push(u);
  }
  return picked;
}

/** Replaces a shard's sibling port with one that lets the giver grant and then loses the answer. */
async function loseNextAnswers(couponId: number, shard: number) {
  await runInDurableObject(shardOf(couponId, shard), (instance: CouponIssuer) => {
    const port: SiblingPort = {
      give: async (s: number, request: GiveRequest) => {
        await shardOf(couponId, s).give(couponId, s, request); // the giver commits its grant...
        throw new Error("answer lost"); // ...and the receiver never hears it (crash, eviction, network)
      },
      acknowledge: (s: number, ids: string[]) => shardOf(couponId, s).acknowledge(couponId, s, ids),
      push: (s: number, push: PushRequest) => shardOf(couponId, s).push(couponId, s, push),
    };
    instance.siblingPort = port;
  });
}

/** Positive grants a shard made to `to`, leaving out the share it handed over when `to` was primed (transfer `<to>:1`). */
const grantsOut = (couponId: number, shard: number, to: number) =>
  runInDurableObject(shardOf(couponId, shard), (_i, state) =>
    state.storage.sql
      .exec<{ n: number; units: number }>(
        "SELECT count(*) AS n, coalesce(sum(granted), 0) AS units FROM transfers_out WHERE granted > 0 AND to_shard = ? AND transfer_id != ?",
        to,
        `${to}:1`,
      )
      .one(),
  );

describe("a coupon sharded over K = 8 objects", () => {
  it("splits the quantity evenly when created, and the admin view sums the shards", async () => {
    const couponId = await createCoupon({ quantity: 200, shards: K });
    const all = await states(couponId);
    expect(all.map((s) => s.held)).toEqual(Array(K).fill(25));
    expect(all.map((s) => s.shards)).toEqual(Array(K).fill(K));
    const view = await api.get(`/api/v1/admin/coupons/${couponId}/shards`, adminHeaders);
    expect(view.status).toBe(200);
    expect(view.body.data).toMatchObject({ couponId, shards: K, quantity: 200, issued: 0, free: 200 });
    expect(view.body.data.perShard).toHaveLength(K);
  });

  it("storm: exactly the quantity is issued, one per user, every shard's users on their home shard", async () => {
    const quantity = 120;
    const couponId = await createCoupon({ quantity, shards: K });
    const users = await createUsers(360);
    const responses = await Promise.all(users.map((u) => issue(couponId, u)));
    expect(tally(responses)).toEqual({ "201": quantity, "409 COUPON_SOLD_OUT": users.length - quantity });
    const winners = users.filter((_, i) => responses[i]!.status === 201);
    await assertShardedExact(couponId, quantity, winners);
    // Asking again changes nothing: each owner's home shard says ALREADY_ISSUED (asked directly: for a
    // second the Worker itself refuses the sold-out coupon, docs/ARCHITECTURE.md §8).
    const again = await Promise.all(
      winners
        .slice(0, 40)
        .map((u) =>
          shardOf(couponId, homeShard(u, K)).issue({ couponId, userId: u, now: Date.now(), at: { shard: homeShard(u, K), shards: K } }),
        ),
    );
    expect(again.map((a) => (a.ok ? "ok" : a.code))).toEqual(Array(40).fill("COUPON_ALREADY_ISSUED"));
    await assertShardedExact(couponId, quantity, winners);
  });

  it("no false sold-out: demand equal to the quantity, all of it homed on two shards, is served in full by borrowing", async () => {
    const quantity = 96; // 12 per shard: shards 0 and 1 must borrow 72 units from the other six
    const couponId = await createCoupon({ quantity, shards: K });
    const users = await usersHomedTo([0, 1], quantity);
    const responses = await Promise.all(users.map((u) => issue(couponId, u)));
    expect(tally(responses)).toEqual({ "201": quantity });
    const all = await assertShardedExact(couponId, quantity, users);
    expect(
      all.slice(2).every((s) => s.held === 0),
      "the other shards gave everything",
    ).toBe(true);
    // Now every shard is empty: the next user, wherever their home is, hears SOLD_OUT.
    const [late] = await createUsers(1);
    const res = await issue(couponId, late!);
    expect(errorCode(res)).toBe("COUPON_SOLD_OUT");
  });

  it("10,000 distinct users spread within ±25 % of uniform over the shards (counted)", () => {
    for (const shards of [8, 16]) {
      const counts = Array<number>(shards).fill(0);
      for (let u = 1; u <= 10_000; u++) counts[homeShard(u, shards)]!++;
      const uniform = 10_000 / shards;
      for (const c of counts) {
        expect(c).toBeGreaterThanOrEqual(uniform * 0.75);
        expect(c).toBeLessThanOrEqual(uniform * 1.25);
      }
    }
  });

  it("a transfer whose answer is lost (giver committed, receiver crashed before applying) is applied exactly once", async () => {
    const quantity = 16; // 2 per shard
    const couponId = await createCoupon({ quantity, shards: K });
    const [u1, u2, u3] = await usersHomedTo([3], 3);
    expect((await issue(couponId, u1!)).status).toBe(201);
    expect((await issue(couponId, u2!)).status).toBe(201); // shard 3 is now empty
    await loseNextAnswers(couponId, 3);
    const lost = await issue(couponId, u3!); // shard 3 claims from shard 0, which grants; the answers never arrive
    expect(errorCode(lost)).toBe("SERVICE_UNAVAILABLE");
    const before = await shardOf(couponId, 3).state();
    expect(before.openTransfers).toBe(MAX_BORROW_ROUNDS); // every claim of the borrow, each left open
    // The receiver is evicted (its memory, and the test's port, are gone), then its alarm re-sends the open transfers.
    await evictDurableObject(shardOf(couponId, 3));
    const all = await settle(couponId);
    expect(all[3]!.openTransfers).toBe(0);
    let grants = 0;
    let granted = 0;
    for (let s = 0; s < K; s++) {
      if (s === 3) continue;
      const g = await grantsOut(couponId, s, 3);
      grants += g.n;
      granted += g.units;
    }
    expect(grants).toBe(before.openTransfers); // one grant per transfer, though each was sent twice
    expect(granted).toBeGreaterThan(0);
    // Applied once: shard 3 (drained by shard 0's gathering) pushed what arrived late back to shard 0, and the
    // units over the shards are exactly the quantity (a second application would have made units).
    expect(all.reduce((n, s) => n + s.held, 0)).toBe(quantity);
    await assertShardedExact(couponId, quantity, [u1!, u2!]);
    // The units arrived: the user who heard 503 gets the coupon on retry.
    expect((await issue(couponId, u3!)).status).toBe(201);
    await assertShardedExact(couponId, quantity, [u1!, u2!, u3!]);
  });

  it("a giver evicted right after granting answers the re-sent transfer with the same grant, once", async () => {
    const quantity = 16;
    const couponId = await createCoupon({ quantity, shards: K });
    const [u1, u2, u3] = await usersHomedTo([5], 3);
    await issue(couponId, u1!);
    await issue(couponId, u2!);
    await loseNextAnswers(couponId, 5);
    await issue(couponId, u3!);
    // Every giver loses its memory too; only what each persisted before answering counts.
    for (let s = 0; s < K; s++) await evictDurableObject(shardOf(couponId, s));
    const request = { transferId: "5:1", receiver: 5, need: 1, extra: 1 };
    // A duplicate of a transfer id a giver already granted takes nothing more.
    const beforeDup = (await shardOf(couponId, 0).state()).held;
    const dup = await shardOf(couponId, 0).give(couponId, 0, request);
    expect((await shardOf(couponId, 0).state()).held).toBe(beforeDup);
    expect(dup.granted).toBe(2); // "5:1" was shard 5 taking its share from shard 0 when primed
    await assertShardedExact(couponId, quantity, [u1!, u2!]);
  });

  it("stays exact when every shard is aborted in the middle of a borrowing storm", async () => {
    const quantity = 64;
    const couponId = await createCoupon({ quantity, shards: K });
    const users = await usersHomedTo([2, 6], 90);
    let answered = 0;
    let signal!: () => void;
    const reached = new Promise<void>((r) => (signal = r));
    const wave = Promise.all(
      users.map(async (u) => {
        const res = await issue(couponId, u);
        if (++answered === 20) signal();
        return res;
      }),
    );
    await reached;
    await abortAllDurableObjects();
    const first = await wave;
    // Whoever did not hear a final answer (aborted, 503) retries, as a client would.
    const retry = users.filter((_, i) => ![201, 409].includes(first[i]!.status));
    await settle(couponId);
    const second = await Promise.all(retry.map((u) => issue(couponId, u)));
    const all = await settle(couponId);
    const winners = all.flatMap((s) => s.users);
    expect(winners.length, "demand exceeds the quantity: every unit is issued").toBe(quantity);
    for (const [i, u] of users.entries()) {
      const final = retry.includes(u) ? second[retry.indexOf(u)]! : first[i]!;
      if (final.status === 201) expect(winners).toContain(u);
    }
    await assertShardedExact(couponId, quantity, winners);
  });
});

describe("a sharded coupon nobody primed (written straight into D1, as the dev seed does)", () => {
  it("each shard takes its fair share from shard 0 on its first issuance, then serves alone", async () => {
    const now = Date.now();
    const couponId = (await env.DB.prepare(
      `INSERT INTO coupons (name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, valid_days, shards, created_at)
       VALUES ('seeded', 'AMOUNT', 100, 400, 0, ?1, ?2, 7, 4, ?1) RETURNING id`,
    )
      .bind(now - 60_000, now + 86_400_000)
      .first<number>("id"))!;
    const users: number[] = [];
    for (let shard = 1; shard < 4; shard++) users.push(...(await usersHomedTo4(shard, 1)));
    for (const u of users) expect((await issue(couponId, u)).status).toBe(201);
    const all = await Promise.all(Array.from({ length: 4 }, (_, s) => shardOf(couponId, s).state()));
    expect(all.map((s) => s.held)).toEqual([100, 100, 100, 100]);
    expect(all.reduce((n, s) => n + s.issued, 0)).toBe(3);
  });
});

async function usersHomedTo4(shard: number, n: number): Promise<number[]> {
  const picked: number[] = [];
  while (picked.length < n) for (const u of await createUsers(20)) if (homeShard(u, 4) === shard && picked.length < n) picked.push(u);
  return picked;
}

describe("changing a sharded coupon", () => {
  it("raises the shard count before the window opens, and refuses once it is open or issued", async () => {
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const couponId = await createCoupon({ quantity: 90, startsAt: future });
    const raised = await api.put(`/api/v1/admin/coupons/${couponId}/shards`, { shards: 3 }, adminHeaders);
    expect(raised.status).toBe(200);
    expect(raised.body.data).toEqual({ couponId, shards: 3 });
    const all = await states(couponId, 3);
    expect(all.map((s) => s.held)).toEqual([30, 30, 30]);
    expect(all.map((s) => s.shards)).toEqual([3, 3, 3]);
    const lower = await api.put(`/api/v1/admin/coupons/${couponId}/shards`, { shards: 2 }, adminHeaders);
    expect(errorCode(lower)).toBe("COUPON_SHARDS_LOCKED");
    const open = await createCoupon({ quantity: 10 });
    expect(errorCode(await api.put(`/api/v1/admin/coupons/${open}/shards`, { shards: 4 }, adminHeaders))).toBe("COUPON_SHARDS_LOCKED");
    const tooMany = await api.put(`/api/v1/admin/coupons/${couponId}/shards`, { shards: 1000 }, adminHeaders);
    expect(errorCode(tooMany)).toBe("VALIDATION_FAILED");
  });

  it("a quantity cut borrows back from the shards, and is refused below what they issued together", async () => {
    const couponId = await createCoupon({ quantity: 80, shards: K });
    const users = await createUsers(30);
    const responses = await Promise.all(users.map((u) => issue(couponId, u)));
    expect(tally(responses)).toEqual({ "201": 30 });
    // 50 free, of which shard 0 holds at most 10: the cut to 31 needs 49 back from its siblings.
    const cut = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 31 }, adminHeaders);
    expect(cut.status).toBe(200);
    expect(cut.body.data).toEqual({ couponId, quantity: 31, issuedQuantity: 30 });
    const below = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 29 }, adminHeaders);
    expect(errorCode(below)).toBe("COUPON_QUANTITY_BELOW_ISSUED");
    await assertShardedExact(couponId, 31, users);
    const raise = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 40 }, adminHeaders);
    expect(raise.status).toBe(200);
    const more = await createUsers(12);
    const after = await Promise.all(more.map((u) => issue(couponId, u)));
    expect(tally(after)).toEqual({ "201": 10, "409 COUPON_SOLD_OUT": 2 });
    await assertShardedExact(couponId, 40, [...users, ...more.filter((_, i) => after[i]!.status === 201)]);
  });
});
