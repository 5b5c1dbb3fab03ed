import { describe, expect, it } from "vitest";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import type { CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import type { IssuanceStore } from "../../src/coupons/issuance.repo";
import { adminHeaders, api, createCoupon, createUser } from "../support/http";
import { createUsers, d1State, issue, issuerOf } from "./support";

/** Swaps the DO's D1 adapter for one whose writes fail; returns the real one. */
async function breakD1Writes(couponId: number): Promise<IssuanceStore> {
  return runInDurableObject(issuerOf(couponId), (instance: CouponIssuer) => {
    const real = instance.store;
    instance.store = {
      load: (id) => real.load(id),
      project: async () => {
        throw new Error("D1 unavailable (simulated)");
      },
      updateQuantity: async () => {
        throw new Error("D1 unavailable (simulated)");
      },
    };
    return real;
  });
}

describe("CouponIssuer write-behind alarm", () => {
  it("answers 503 while the D1 write fails (a 201 always means D1 has the row), and the alarm converges D1 to exactly the DO's list", async () => {
    const users = await createUsers(4);
    const couponId = await createCoupon({ quantity: 10 });
    expect((await issue(couponId, users[0]!)).status).toBe(201);
    const stub = issuerOf(couponId);
    await breakD1Writes(couponId);

    const during = await Promise.all(users.slice(1).map((u) => issue(couponId, u)));
    expect(during.map((r) => [r.status, r.body.error, r.headers.get("retry-after")])).toEqual([
      [503, "SERVICE_UNAVAILABLE", "1"],
      [503, "SERVICE_UNAVAILABLE", "1"],
      [503, "SERVICE_UNAVAILABLE", "1"],
    ]);
    expect(await stub.state()).toMatchObject({ issued: 4, unsynced: 3 });
    expect(await d1State(couponId)).toMatchObject({ users: [users[0]], issuedQuantity: 1, events: 1 });
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();

    // D1 comes back: a fresh instance has the real adapter; the pending alarm writes the rows.
    await evictDurableObject(stub);
    await runDurableObjectAlarm(stub);
    const state = await stub.state();
    expect(state).toMatchObject({ issued: 4, unsynced: 0 });
    expect(state.users).toEqual([...users].sort((a, b) => a - b));
    expect(await d1State(couponId)).toEqual({ users: state.users, issuedQuantity: 4, quantity: 10, events: 4 });
    expect(await runInDurableObject(stub, (_i, s) => s.storage.getAlarm())).toBeNull();

    // The owner's list now shows the coupon with its id, and the owner's retry is told it has it.
    const listed = await api.get(`/api/v1/coupons?userId=${users[1]}`);
    expect(listed.body.data.coupons.map((c: any) => c.couponId)).toEqual([couponId]);
    expect((await issue(couponId, users[1]!)).body.error).toBe("COUPON_ALREADY_ISSUED");
  });

  it("settles a provisional issuance on the user's retry once D1 is back: 201 with the row's id, nothing twice", async () => {
    const u = await createUser();
    const couponId = await createCoupon({ quantity: 3 });
    const stub = issuerOf(couponId);
    expect((await issue(couponId, await createUser())).status).toBe(201);
    const real = await breakD1Writes(couponId);
    expect((await issue(couponId, u)).status).toBe(503);
    await runInDurableObject(stub, (instance: CouponIssuer) => {
      instance.store = real;
    });
    const retried = await issue(couponId, u);
    expect(retried.status).toBe(201);
    expect(retried.body.data.userCouponId).toEqual(expect.any(Number));
    expect(await stub.state()).toMatchObject({ issued: 2, unsynced: 0 });
    expect(await d1State(couponId)).toMatchObject({ issuedQuantity: 2, events: 2 });
  });

  it("re-arms itself while D1 keeps failing, then converges without duplicates", async () => {
    const [a, b] = [await createUser(), await createUser()];
    const couponId = await createCoupon({ quantity: 5 });
    expect((await issue(couponId, a)).status).toBe(201);
    const stub = issuerOf(couponId);
    const real = await breakD1Writes(couponId);
    expect((await issue(couponId, b)).status).toBe(503);

    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await stub.state()).unsynced).toBe(1);
    expect(await runInDurableObject(stub, (_i, s) => s.storage.getAlarm())).not.toBeNull();

    await runInDurableObject(stub, (instance: CouponIssuer) => {
      instance.store = real;
    });
    await runDurableObjectAlarm(stub);
    await runDurableObjectAlarm(stub); // an extra run changes nothing
    expect(await stub.state()).toMatchObject({ issued: 2, unsynced: 0 });
    expect(await d1State(couponId)).toEqual({ users: [a, b].sort((x, y) => x - y), issuedQuantity: 2, quantity: 5, events: 2 });
  });

  it("re-arms the alarm after a crash between the decision and the D1 write", async () => {
    const [a, b] = [await createUser(), await createUser()];
    const couponId = await createCoupon({ quantity: 5 });
    expect((await issue(couponId, a)).status).toBe(201);
    const stub = issuerOf(couponId);
    // What a crash right after transactionSync leaves behind: a decided, unsynced issuance and no alarm.
    await runInDurableObject(stub, async (_i, state) => {
      const now = Date.now();
      state.storage.transactionSync(() => {
        state.storage.sql.exec("INSERT INTO issuances (user_id, issued_at, expires_at, synced) VALUES (?, ?, ?, 0)", b, now, now + 86_400_000);
        state.storage.sql.exec("UPDATE coupon SET issued = issued + 1");
      });
      await state.storage.deleteAlarm();
    });
    await evictDurableObject(stub);

    expect(await stub.state()).toMatchObject({ issued: 2, unsynced: 1 });
    expect(await runInDurableObject(stub, (_i, s) => s.storage.getAlarm())).not.toBeNull();
    await runDurableObjectAlarm(stub);
    expect(await d1State(couponId)).toEqual({ users: [a, b].sort((x, y) => x - y), issuedQuantity: 2, quantity: 5, events: 2 });
  });

  it("retries a failed quantity change in D1 from the alarm", async () => {
    const couponId = await createCoupon({ quantity: 5 });
    const stub = issuerOf(couponId);
    expect((await issue(couponId, await createUser())).status).toBe(201);
    const real = await breakD1Writes(couponId);
    const res = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 8 }, adminHeaders);
    expect(res.status).toBe(200);
    expect((await d1State(couponId)).quantity).toBe(5);
    await runInDurableObject(stub, (instance: CouponIssuer) => {
      instance.store = real;
    });
    await runDurableObjectAlarm(stub);
    expect(await d1State(couponId)).toMatchObject({ quantity: 8, issuedQuantity: 1 });
    expect((await stub.state()).quantity).toBe(8);
  });
});
