import { describe, expect, it } from "vitest";
import { createCoupon, createUser } from "../support/http";
import { createUsers, d1State, issue, issuerOf, tally } from "./support";

describe("CouponIssuer under concurrent requests", () => {
  it("issues exactly the quantity under a storm of 150 users on 100 coupons", async () => {
    const users = await createUsers(150);
    const couponId = await createCoupon({ quantity: 100 });
    const responses = await Promise.all(users.map((u) => issue(couponId, u)));

    expect(tally(responses)).toEqual({ "201": 100, "409 COUPON_SOLD_OUT": 50 });
    const winners = users.filter((_, i) => responses[i]!.status === 201).sort((a, b) => a - b);
    const ids = responses.filter((r) => r.status === 201).map((r) => r.body.data.userCouponId);
    expect(new Set(ids).size).toBe(100);

    const state = await issuerOf(couponId).state();
    expect(state).toMatchObject({ quantity: 100, issued: 100, unsynced: 0 });
    expect(state.users).toEqual(winners);
    expect(await d1State(couponId)).toEqual({ users: winners, issuedQuantity: 100, quantity: 100, events: 100 });
  });

  it("gives one user exactly one coupon out of 20 parallel requests", async () => {
    const userId = await createUser();
    const couponId = await createCoupon({ quantity: 10 });
    const responses = await Promise.all(Array.from({ length: 20 }, () => issue(couponId, userId)));

    expect(tally(responses)).toEqual({ "201": 1, "409 COUPON_ALREADY_ISSUED": 19 });
    expect(await issuerOf(couponId).state()).toMatchObject({ issued: 1, users: [userId], unsynced: 0 });
    expect(await d1State(couponId)).toEqual({ users: [userId], issuedQuantity: 1, quantity: 10, events: 1 });
  });

  it("keeps two coupons stormed at once independent", async () => {
    const users = await createUsers(60);
    const [a, b] = [await createCoupon({ quantity: 40 }), await createCoupon({ quantity: 15 })];
    const [ra, rb] = await Promise.all([Promise.all(users.map((u) => issue(a, u))), Promise.all(users.map((u) => issue(b, u)))]);

    expect(tally(ra)).toEqual({ "201": 40, "409 COUPON_SOLD_OUT": 20 });
    expect(tally(rb)).toEqual({ "201": 15, "409 COUPON_SOLD_OUT": 45 });
    for (const [couponId, responses, quantity] of [
      [a, ra, 40],
      [b, rb, 15],
    ] as const) {
      const winners = users.filter((_, i) => responses[i]!.status === 201).sort((x, y) => x - y);
      expect((await issuerOf(couponId).state()).users).toEqual(winners);
      expect(await d1State(couponId)).toEqual({ users: winners, issuedQuantity: quantity, quantity, events: quantity });
    }
  });

  it("mixes repeat requests from winners into a sold-out storm without a second issue", async () => {
    const users = await createUsers(30);
    const couponId = await createCoupon({ quantity: 10 });
    const first = await Promise.all(users.map((u) => issue(couponId, u)));
    const again = await Promise.all(users.map((u) => issue(couponId, u)));

    expect(tally(first)).toEqual({ "201": 10, "409 COUPON_SOLD_OUT": 20 });
    // This isolate has been told the coupon is sold out: everyone, winners too, hears that for
    // up to SOLD_OUT_TTL_MS without a round trip (docs/ARCHITECTURE.md §3: coupon issuance).
    expect(tally(again)).toEqual({ "409 COUPON_SOLD_OUT": 30 });
    // The object itself still tells winners apart.
    const winner = users[first.findIndex((r) => r.status === 201)]!;
    expect(await issuerOf(couponId).issue({ couponId, userId: winner, now: Date.now() })).toMatchObject({
      ok: false,
      code: "COUPON_ALREADY_ISSUED",
      d1Calls: 0,
    });
    expect(await d1State(couponId)).toMatchObject({ issuedQuantity: 10, events: 10 });
    expect((await d1State(couponId)).users).toHaveLength(10);
  });
});
