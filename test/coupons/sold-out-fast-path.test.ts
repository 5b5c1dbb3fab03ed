import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { CouponsRepo } from "../../src/coupons/coupons.repo";
import { CouponsService } from "../../src/coupons/coupons.service";
import { couponIssuerClient, type CouponIssuerPort } from "../../src/coupons/coupon-issuer.client";
import { SOLD_OUT_TTL_MS, SoldOutMemo } from "../../src/coupons/sold-out";
import { noUserCouponCache } from "../../src/coupons/user-coupon.cache";
import { createDb } from "../../src/db/client";
import { AppError } from "../../src/shared/errors";
import { createCoupon, createUser } from "../support/http";
import { createUsers, d1State, issuerOf } from "./support";

/**
 * One simulated Worker isolate: its own sold-out memory and clock, the real
 * CouponIssuer objects and D1. `objectCalls` counts the round trips to the object.
 */
function isolate(start = Date.now()) {
  let t = start;
  let objectCalls = 0;
  const real = couponIssuerClient(env.COUPON_ISSUER);
  const counted: CouponIssuerPort = {
    ...real,
    issue: (...args) => {
      objectCalls++;
      return real.issue(...args);
    },
  };
  const service = new CouponsService({
    repo: new CouponsRepo(createDb(env.DB)),
    issuer: counted,
    clock: () => t,
    cache: noUserCouponCache,
    soldOut: new SoldOutMemo(),
  });
  const outcome = (userId: number, couponId: number) =>
    service.issue(userId, couponId).then(
      () => "201",
      (err: unknown) => (err instanceof AppError ? err.code : String(err)),
    );
  return { service, outcome, calls: () => objectCalls, advance: (ms: number) => (t += ms) };
}

describe("the isolate's sold-out memory (docs/ARCHITECTURE.md §8: 0 hops for a known sold-out coupon)", () => {
  it("refuses without asking the object for SOLD_OUT_TTL_MS after it said sold out, then asks again", async () => {
    const [a, b, c] = [await createUser(), await createUser(), await createUser()];
    const couponId = await createCoupon({ quantity: 1 });
    const w = isolate();
    expect(await w.outcome(a, couponId)).toBe("201");
    expect(await w.outcome(b, couponId)).toBe("COUPON_SOLD_OUT");
    expect(w.calls()).toBe(2);
    w.advance(SOLD_OUT_TTL_MS - 1);
    expect(await w.outcome(c, couponId)).toBe("COUPON_SOLD_OUT");
    expect(w.calls()).toBe(2); // answered from memory
    w.advance(1);
    expect(await w.outcome(c, couponId)).toBe("COUPON_SOLD_OUT");
    expect(w.calls()).toBe(3); // the memory is over: the object was asked
    expect(SOLD_OUT_TTL_MS).toBeLessThanOrEqual(1_000);
  });

  it("resumes at once in the isolate that raised the quantity, and within the TTL in another one", async () => {
    const users = await createUsers(4);
    const couponId = await createCoupon({ quantity: 1 });
    const t0 = Date.now();
    const [x, y] = [isolate(t0), isolate(t0)];
    expect(await x.outcome(users[0]!, couponId)).toBe("201");
    expect(await x.outcome(users[1]!, couponId)).toBe("COUPON_SOLD_OUT");
    expect(await y.outcome(users[1]!, couponId)).toBe("COUPON_SOLD_OUT");

    expect(await x.service.setQuantity(couponId, 3)).toMatchObject({ quantity: 3, issuedQuantity: 1 });
    expect(await x.outcome(users[1]!, couponId)).toBe("201"); // same isolate: forgotten at once
    y.advance(SOLD_OUT_TTL_MS / 2);
    expect(await y.outcome(users[2]!, couponId)).toBe("COUPON_SOLD_OUT"); // still remembered there
    y.advance(SOLD_OUT_TTL_MS / 2);
    expect(await y.outcome(users[2]!, couponId)).toBe("201"); // within the TTL
    expect(await y.outcome(users[3]!, couponId)).toBe("COUPON_SOLD_OUT");
    expect(await d1State(couponId)).toMatchObject({ users: users.slice(0, 3), issuedQuantity: 3, quantity: 3 });
  });

  it("can only refuse: a storm through one memory issues exactly the quantity, to real users only", async () => {
    const users = await createUsers(80);
    const couponId = await createCoupon({ quantity: 30 });
    const w = isolate();
    // Unknown ids first: each takes a unit for one D1 round trip and gives it back.
    const ghosts = Array.from({ length: 10 }, (_, i) => 990_000 + i);
    expect(await Promise.all(ghosts.map((g) => w.outcome(g, couponId)))).toEqual(ghosts.map(() => "USER_NOT_FOUND"));
    const outcomes = await Promise.all(users.map((u) => w.outcome(u, couponId)));
    const winners = users.filter((_, i) => outcomes[i] === "201").sort((p, q) => p - q);
    expect(winners).toHaveLength(30);
    expect(outcomes.filter((o) => o !== "201").every((o) => o === "COUPON_SOLD_OUT")).toBe(true);
    // Late unknown ids and repeats hear sold out from memory; nothing more is issued.
    expect(await Promise.all([...ghosts, ...winners].map((u) => w.outcome(u, couponId)))).toEqual(
      [...ghosts, ...winners].map(() => "COUPON_SOLD_OUT"),
    );
    const state = await issuerOf(couponId).state();
    expect(state).toMatchObject({ issued: 30, unsynced: 0 });
    expect(state.users).toEqual(winners);
    expect(await d1State(couponId)).toEqual({ users: winners, issuedQuantity: 30, quantity: 30, events: 30 });
  });
});
