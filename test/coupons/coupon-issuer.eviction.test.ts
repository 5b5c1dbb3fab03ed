import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { abortAllDurableObjects, evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { createCoupon } from "../support/http";
import { createUsers, d1State, issue, issuerOf, tally } from "./support";

/**
 * Starts one request per user and resolves `reached` once `k` of them have
 * answered, i.e. when the DO is running and the rest are in flight.
 */
function storm(couponId: number, users: number[], k: number) {
  let done = 0;
  let signal!: () => void;
  const reached = new Promise<void>((resolve) => (signal = resolve));
  const all = Promise.all(
    users.map(async (u) => {
      const res = await issue(couponId, u);
      if (++done === k) signal();
      return res;
    }),
  );
  return { reached, all };
}

describe("CouponIssuer across eviction, abort and first load", () => {
  it("stays exact when the DO is evicted in the middle of a storm", async () => {
    const users = await createUsers(150);
    const couponId = await createCoupon({ quantity: 100 });
    const wave1 = storm(couponId, users.slice(0, 70), 10);
    await wave1.reached;
    await evictDurableObject(issuerOf(couponId));
    const wave2 = storm(couponId, users.slice(70), 10);
    await wave2.reached;
    await evictDurableObject(issuerOf(couponId));
    const first = await wave1.all;
    const second = await wave2.all;
    const all = [...first, ...second];

    expect(tally(all)).toEqual({ "201": 100, "409 COUPON_SOLD_OUT": 50 });
    const winners = users.filter((_, i) => all[i]!.status === 201).sort((a, b) => a - b);
    expect(await issuerOf(couponId).state()).toMatchObject({ issued: 100, users: winners, unsynced: 0 });
    expect(await d1State(couponId)).toEqual({ users: winners, issuedQuantity: 100, quantity: 100, events: 100 });
    // A retry storm after eviction issues nothing more: this isolate refuses it itself (sold out known),
    // and the object, asked directly, still tells winners from losers.
    await evictDurableObject(issuerOf(couponId));
    const retry = await Promise.all(users.map((u) => issue(couponId, u)));
    expect(tally(retry)).toEqual({ "409 COUPON_SOLD_OUT": 150 });
    const direct = await Promise.all(users.map((u) => issuerOf(couponId).issue({ couponId, userId: u, now: Date.now() })));
    expect(tally(direct.map((d) => (d.ok ? { status: 201, body: {} } : { status: 409, body: { error: d.code } })))).toEqual({
      "409 COUPON_ALREADY_ISSUED": 100,
      "409 COUPON_SOLD_OUT": 50,
    });
  });

  it("never issues twice when the DO is aborted in the middle of a storm and clients retry", async () => {
    const users = await createUsers(60);
    const couponId = await createCoupon({ quantity: 40 });
    const quiet = vi.spyOn(console, "warn").mockImplementation(() => {}); // the expected 503s log as warnings
    const wave = storm(couponId, users, 5);
    await wave.reached;
    await abortAllDurableObjects();
    const first = await wave.all;
    quiet.mockRestore();
    // The abort really cut requests off, and they were answered 503 with Retry-After, never 500.
    const cut = first.filter((r) => r.status >= 500);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.every((r) => r.status === 503 && r.headers.get("retry-after") === "1")).toBe(true);
    // Requests cut off by the abort may or may not have been decided; clients retry them.
    const unknown = users.filter((_, i) => first[i]!.status >= 500);
    const retried = await Promise.all(unknown.map((u) => issue(couponId, u)));
    expect(retried.every((r) => r.status < 500)).toBe(true);

    const stub = issuerOf(couponId);
    await runDurableObjectAlarm(stub); // converges anything decided but cut off before its D1 write
    const state = await stub.state();
    expect(state.issued).toBe(40);
    expect(state.users).toHaveLength(40);
    expect(state.unsynced).toBe(0);
    expect(await d1State(couponId)).toEqual({ users: state.users, issuedQuantity: 40, quantity: 40, events: 40 });
    // Every user who heard 201 holds a coupon, and nobody else got one twice (one row per user by construction).
    const told201 = [...first, ...retried].filter((r) => r.status === 201).map((r) => r.body.data.userId);
    expect(told201.every((u) => state.users.includes(u))).toBe(true);
  });

  it("loads issuances already in D1 on first use and counts them against the quantity", async () => {
    const users = await createUsers(4);
    // A coupon that reached D1 without the admin API (a seed or an import): its object loads on first use.
    const t = Date.now();
    const couponId = (await env.DB.prepare(
      `INSERT INTO coupons (name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, valid_days, created_at)
       VALUES ('imported', 'AMOUNT', 1000, 3, 0, ?1, ?2, 7, ?1) RETURNING id`,
    )
      .bind(t - 3_600_000, t + 86_400_000)
      .first<number>("id"))!;
    const now = Date.now();
    for (const u of users.slice(0, 2)) {
      await env.DB.prepare("INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) VALUES (?, ?, ?, ?)")
        .bind(u, couponId, now, now + 86_400_000)
        .run();
    }
    const responses = await Promise.all(users.map((u) => issue(couponId, u)));
    const outcome = responses.map((r) => (r.status === 201 ? 201 : r.body.error));
    expect(outcome.slice(0, 2)).toEqual(["COUPON_ALREADY_ISSUED", "COUPON_ALREADY_ISSUED"]);
    // The last unit goes to whichever of the two newcomers the object serves first: arrival order is not pinned.
    expect([...outcome.slice(2)].sort()).toEqual([201, "COUPON_SOLD_OUT"].sort());
    const winner = users[2 + outcome.slice(2).indexOf(201)]!;
    const holders = [users[0]!, users[1]!, winner].sort((a, b) => a - b);
    expect(await issuerOf(couponId).state()).toMatchObject({ issued: 3, quantity: 3, unsynced: 0, users: holders });
    expect(await d1State(couponId)).toMatchObject({ users: holders, issuedQuantity: 3 });
  });
});
