import { describe, expect, it } from "vitest";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { SYNC_CHUNKS_PER_ALARM, type CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import { ROWS_PER_BATCH, type IssuanceStore } from "../../src/coupons/issuance.repo";
import { adminHeaders, api, createCoupon, createUser } from "../support/http";
import { createUsers, d1State, insertUsers, issue, issuerOf } from "./support";

/** Swaps the DO's D1 adapter for one whose writes fail; returns the real one. */
async function breakD1Writes(couponId: number): Promise<IssuanceStore> {
  return runInDurableObject(issuerOf(couponId), (instance: CouponIssuer) => {
    const real = instance.store;
    instance.store = {
      loadPage: (id, step) => real.loadPage(id, step),
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

/**
 * What a long D1 outage (or a crash before the D1 write) leaves behind: provisional issuances
 * for `users`, decided and persisted in the object but not in D1, and no alarm. The object is
 * evicted after, so its next incarnation reads them from storage.
 */
async function leaveProvisional(couponId: number, users: number[]) {
  const stub = issuerOf(couponId);
  await runInDurableObject(stub, async (_i, state) => {
    const now = Date.now();
    state.storage.transactionSync(() => {
      for (const u of users) {
        state.storage.sql.exec(
          "INSERT INTO issuances (user_id, issued_at, expires_at, synced) VALUES (?, ?, ?, 0)",
          u,
          now,
          now + 86_400_000,
        );
      }
      state.storage.sql.exec("UPDATE coupon SET issued = issued + ?", users.length);
    });
    await state.storage.deleteAlarm();
  });
  await evictDurableObject(stub);
}

/**
 * Swaps the object's D1 adapter for one that writes chunk by chunk (ROWS_PER_BATCH rows, one D1
 * batch each, as IssuanceRepo does) and fails on chunk number `failOn` (counted over its life).
 * `committed` lists the sizes of the chunks D1 committed.
 */
async function chunkedStore(couponId: number, failOn?: number) {
  const probe = { committed: [] as number[], failOn };
  await runInDurableObject(issuerOf(couponId), (instance: CouponIssuer) => {
    const real = instance.store;
    let chunks = 0;
    instance.store = {
      loadPage: (id, step) => real.loadPage(id, step),
      updateQuantity: (id, quantity, version) => real.updateQuantity(id, quantity, version),
      project: async (id, records, at) => {
        const ids = new Map<number, number>();
        for (let i = 0; i < records.length; i += ROWS_PER_BATCH) {
          if (++chunks === probe.failOn) throw new Error(`D1 unavailable (simulated) on chunk ${chunks}`);
          const chunk = records.slice(i, i + ROWS_PER_BATCH);
          for (const [userId, rowId] of await real.project(id, chunk, at)) ids.set(userId, rowId);
          probe.committed.push(chunk.length);
        }
        return ids;
      },
    };
  });
  return probe;
}

const alarmOf = (couponId: number) => runInDurableObject(issuerOf(couponId), (_i, s) => s.storage.getAlarm());

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
        state.storage.sql.exec(
          "INSERT INTO issuances (user_id, issued_at, expires_at, synced) VALUES (?, ?, ?, 0)",
          b,
          now,
          now + 86_400_000,
        );
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
    // A raise reaches D1 before the object uses it (issue 19): with D1 down it is not applied, and says so.
    const raise = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 8 }, adminHeaders);
    expect(raise.status).toBe(503);
    expect((await stub.state()).quantity).toBe(5);
    // A cut is applied by the object first; D1 follows from the alarm.
    const res = await api.patch(`/api/v1/admin/coupons/${couponId}`, { quantity: 3 }, adminHeaders);
    expect(res.status).toBe(200);
    expect((await d1State(couponId)).quantity).toBe(5);
    await runInDurableObject(stub, (instance: CouponIssuer) => {
      instance.store = real;
    });
    await runDurableObjectAlarm(stub);
    expect(await d1State(couponId)).toMatchObject({ quantity: 3, issuedQuantity: 1 });
    expect((await stub.state()).quantity).toBe(3);
  });

  it("keeps every chunk D1 committed when a later one fails: the third chunk fails, the first two stay synced, and a later alarm sends only the rest", async () => {
    const users = await insertUsers(250);
    const couponId = await createCoupon({ quantity: 300 });
    const stub = issuerOf(couponId);
    await leaveProvisional(couponId, users);
    const probe = await chunkedStore(couponId, 3);

    await runDurableObjectAlarm(stub);
    const sorted = [...users].sort((a, b) => a - b);
    expect(probe.committed).toEqual([100, 100]);
    expect(await stub.state()).toMatchObject({ issued: 250, unsynced: 50 });
    expect(await d1State(couponId)).toEqual({ users: sorted.slice(0, 200), issuedQuantity: 200, quantity: 300, events: 200 });
    expect(await alarmOf(couponId), "re-armed for the rest").not.toBeNull();

    // D1 is back: the next alarm re-sends the 50 rows left, not the 200 already confirmed.
    probe.failOn = undefined;
    await runDurableObjectAlarm(stub);
    expect(probe.committed).toEqual([100, 100, 50]);
    const state = await stub.state();
    expect(state).toMatchObject({ issued: 250, unsynced: 0 });
    expect(state.users).toEqual(sorted);
    expect(await d1State(couponId)).toEqual({ users: state.users, issuedQuantity: 250, quantity: 300, events: 250 });
    expect(await alarmOf(couponId)).toBeNull();
  });

  it(`re-syncs at most ${SYNC_CHUNKS_PER_ALARM} chunks per alarm and re-arms itself for the rest of a backlog`, async () => {
    const users = await insertUsers(SYNC_CHUNKS_PER_ALARM * ROWS_PER_BATCH + 30);
    const couponId = await createCoupon({ quantity: users.length });
    const stub = issuerOf(couponId);
    await leaveProvisional(couponId, users);
    const probe = await chunkedStore(couponId);

    await runDurableObjectAlarm(stub);
    expect(probe.committed).toEqual(Array(SYNC_CHUNKS_PER_ALARM).fill(ROWS_PER_BATCH));
    expect(await stub.state()).toMatchObject({ issued: users.length, unsynced: 30 });
    expect((await d1State(couponId)).issuedQuantity).toBe(SYNC_CHUNKS_PER_ALARM * ROWS_PER_BATCH);
    expect(await alarmOf(couponId), "re-armed for the rest").not.toBeNull();

    await runDurableObjectAlarm(stub);
    expect(probe.committed).toEqual([...Array(SYNC_CHUNKS_PER_ALARM).fill(ROWS_PER_BATCH), 30]);
    const state = await stub.state();
    expect(state).toMatchObject({ issued: users.length, unsynced: 0 });
    expect(await d1State(couponId)).toEqual({
      users: state.users,
      issuedQuantity: users.length,
      quantity: users.length,
      events: users.length,
    });
    expect(await alarmOf(couponId)).toBeNull();
  });

  it("sends one D1 batch at a time per object: the alarm's re-sync queues behind a win's batch in flight instead of writing beside it", async () => {
    const users = await insertUsers(151);
    const couponId = await createCoupon({ quantity: 200 });
    const stub = issuerOf(couponId);
    await leaveProvisional(couponId, users.slice(1));
    const seen = await runInDurableObject(stub, async (instance: CouponIssuer) => {
      const real = instance.store;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let entered!: () => void;
      const winInStore = new Promise<void>((resolve) => (entered = resolve));
      const batches: number[] = [];
      let inFlight = 0;
      let maxInFlight = 0;
      instance.store = {
        loadPage: (id, step) => real.loadPage(id, step),
        updateQuantity: (id, quantity, version) => real.updateQuantity(id, quantity, version),
        project: async (id, records, at) => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          batches.push(records.length);
          try {
            if (batches.length === 1) {
              entered();
              await gate; // the win's batch stays in flight until the alarm has had its chance to write
            }
            return await real.project(id, records, at);
          } finally {
            inFlight--;
          }
        },
      };
      const win = instance.issue({ couponId, userId: users[0]!, now: Date.now() });
      await winInStore;
      const alarm = instance.alarm();
      const whileWinInFlight = [...batches];
      release();
      const [outcome] = await Promise.all([win, alarm]);
      return { whileWinInFlight, batches, maxInFlight, won: outcome.ok };
    });
    // The alarm's first chunk (the 100 lowest unsynced user ids) leaves out the win's own row, which its request is writing.
    expect(seen).toEqual({ whileWinInFlight: [1], batches: [1, 99, 51], maxInFlight: 1, won: true });
    const state = await stub.state();
    expect(state).toMatchObject({ issued: 151, unsynced: 0 });
    expect(await d1State(couponId)).toEqual({ users: state.users, issuedQuantity: 151, quantity: 200, events: 151 });
  });
});
