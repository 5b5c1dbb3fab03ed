import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { groupCommitter } from "../../src/shared/group-commit";
import { createUser, errorCode } from "../support/http";
import { failingSessionBatches, inOneBatch, meteredWrites } from "../support/groups";
import { d1CostOf } from "../../src/shared/hops";
import { pointsState, testApp } from "../support/secure-app";

/**
 * Charges group-committed (issue 18): concurrent charges in one isolate share D1 batches,
 * and each charge's effect is conditional, so one refusal never touches its neighbours.
 * The app shares batches across requests (`shareWriteBatches`); `inOneBatch` stages who
 * shares a batch with whom (test/support/groups.ts), so the counts below are exact.
 */
const CHARGE = "/api/v1/points/charge";
const app = testApp({}, { shareWriteBatches: true });
const withKey = (key: string) => ({ "idempotency-key": key });
const charge = (userId: number, amount: number, headers?: Record<string, string>) => () => app.post(CHARGE, { userId, amount }, headers);

async function history(userId: number) {
  const rows = await env.DB.prepare("SELECT amount, balance_after FROM point_history WHERE user_id = ? ORDER BY id")
    .bind(userId)
    .all<{ amount: number; balance_after: number }>();
  return rows.results;
}

describe("charges share D1 batches", () => {
  it("a storm of 60 charges on one user goes out in 3 batches (1, then 32 and 27: the size limit), ends exactly +60,000, one history row each", async () => {
    const userId = await createUser(0);
    const { lead, group, batches, requests } = await inOneBatch({
      kind: "points.charge",
      lead: charge(userId, 1_000),
      group: Array.from({ length: 59 }, () => charge(userId, 1_000)),
    });
    const all = [lead, ...group];
    expect(all.map((r) => r.status)).toEqual(Array(60).fill(200));
    expect({ batches, requests }).toEqual({ batches: 3, requests: 60 });
    expect(await pointsState(userId)).toEqual({ balance: 60_000, history: 60 });
    const rows = await history(userId);
    expect(rows.map((r) => r.balance_after)).toEqual(Array.from({ length: 60 }, (_, i) => (i + 1) * 1_000));
    // Each caller got its own running balance.
    expect(all.map((r) => r.body.data.balance).sort((a: number, b: number) => a - b)).toEqual(rows.map((r) => r.balance_after));
    // The meter counts each batch's write transaction once, on the request that sent it.
    const metered = meteredWrites(all);
    expect({ writeTx: metered.writeTx, sent: metered.sent }).toEqual({ writeTx: 3, sent: 3 });
    expect(metered.sizes.sort((a, b) => a - b)).toEqual([1, ...Array(27).fill(27), ...Array(32).fill(32)]);
  });

  it("charges of 30 users in one batch: each balance and history is its own", async () => {
    const users = await Promise.all(Array.from({ length: 31 }, (_, i) => createUser(i * 10)));
    const { lead, group, batches } = await inOneBatch({
      kind: "points.charge",
      lead: charge(users[0]!, 5),
      group: users.slice(1).map((u, i) => charge(u, 100 + i)),
    });
    expect(batches).toBe(2);
    expect(lead.body.data).toEqual({ userId: users[0], balance: 5 });
    for (const [i, res] of group.entries()) {
      const userId = users[i + 1]!;
      const balance = (i + 1) * 10 + 100 + i;
      expect(res.body.data).toEqual({ userId, balance });
      expect(await pointsState(userId)).toEqual({ balance, history: (i + 1) * 10 > 0 ? 2 : 1 });
    }
  });

  it("refusals in the middle of a batch leave their neighbours applied: a crossed cap and an unknown user", async () => {
    const near = await createUser(4_990_000);
    const other = await createUser(0);
    const { group, batches, split } = await inOneBatch({
      kind: "points.charge",
      lead: charge(other, 1),
      // Headroom 10,000: exactly two of the three 5,000 charges fit, whatever their order in the batch.
      group: [charge(near, 5_000), charge(other, 10), charge(987_123, 100), charge(near, 5_000), charge(other, 10), charge(near, 5_000)],
    });
    // One batch for all six, none of it aborted and resent piecemeal.
    expect({ batches, split }).toEqual({ batches: 2, split: 0 });
    const codes = group.map((r) => (r.status === 200 ? 200 : errorCode(r)));
    expect(codes.filter((c) => c === "BALANCE_LIMIT_EXCEEDED")).toHaveLength(1);
    expect(codes[2]).toBe("USER_NOT_FOUND");
    expect(codes.filter((c) => c === 200)).toHaveLength(4);
    expect(await pointsState(near)).toEqual({ balance: 5_000_000, history: 3 });
    expect(await pointsState(other)).toEqual({ balance: 21, history: 3 });
    const rows = await history(near);
    expect(rows.reduce((s, r) => s + r.amount, 0)).toBe(5_000_000);
    expect(Math.max(...rows.map((r) => r.balance_after))).toBe(5_000_000);
  });

  it("parallel charges crossing 5,000,000 in shared batches never leave the balance above it (14 of 30 fit)", async () => {
    const userId = await createUser(4_000_000);
    const q = groupCommitter(env.DB, "points.charge");
    const before = q.stats.batches;
    const results = await Promise.all(Array.from({ length: 30 }, () => charge(userId, 70_000)()));
    expect(q.stats.batches - before).toBeLessThan(30);
    expect(results.filter((r) => r.status === 200)).toHaveLength(14);
    expect(results.filter((r) => r.status === 409 && errorCode(r) === "BALANCE_LIMIT_EXCEEDED")).toHaveLength(16);
    expect(await pointsState(userId)).toEqual({ balance: 4_980_000, history: 15 });
  });
});

describe("Idempotency-Key in shared charge batches", () => {
  it("10 twins with one key in one batch charge once; the other 9 replay the same answer", async () => {
    const userId = await createUser(0);
    const { group, split } = await inOneBatch({
      kind: "points.charge",
      lead: charge(await createUser(0), 1),
      group: Array.from({ length: 10 }, () => charge(userId, 1_000, withKey("twin"))),
    });
    expect(split).toBe(0);
    expect(group.map((r) => r.status)).toEqual(Array(10).fill(200));
    for (const r of group) expect(r.body).toEqual(group[0]!.body);
    expect(group[0]!.body.data.balance).toBe(1_000);
    expect(group.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(9);
    expect(await pointsState(userId)).toEqual({ balance: 1_000, history: 1 });
    const later = await charge(userId, 1_000, withKey("twin"))();
    expect(later.headers.get("idempotent-replayed")).toBe("true");
    expect(later.body).toEqual(group[0]!.body);
  });

  it("a keyed charge refused in a batch stores its refusal; its keyed neighbour stores its success", async () => {
    const full = await createUser(5_000_000);
    const fine = await createUser(0);
    const { group, split } = await inOneBatch({
      kind: "points.charge",
      lead: charge(fine, 1),
      group: [charge(full, 1, withKey("over")), charge(fine, 50, withKey("ok"))],
    });
    expect(split).toBe(0);
    expect(errorCode(group[0]!)).toBe("BALANCE_LIMIT_EXCEEDED");
    expect(group[1]!.body.data).toEqual({ userId: fine, balance: 51 });
    // The refusal went into the key in the batch itself: one D1 call, no write of its own afterwards.
    expect(d1CostOf(group[0]!.headers.get("server-timing")).calls).toBe(1);
    const [again, okAgain] = [await charge(full, 1, withKey("over"))(), await charge(fine, 50, withKey("ok"))()];
    expect([again.status, again.headers.get("idempotent-replayed")]).toEqual([409, "true"]);
    expect(again.body).toEqual(group[0]!.body);
    expect(okAgain.body).toEqual(group[1]!.body);
    expect(await pointsState(fine)).toEqual({ balance: 51, history: 2 });
    expect(await pointsState(full)).toEqual({ balance: 5_000_000, history: 1 });
  });
});

describe("a keyed charge's refusal is stored in its own batch", () => {
  it("an unknown user's keyed charge stores 404 USER_NOT_FOUND with the key, and a retry replays it", async () => {
    const nobody = 2_000_000_000 + Math.floor(Math.random() * 1_000_000);
    const first = await charge(nobody, 1, withKey("nobody"))();
    expect(errorCode(first)).toBe("USER_NOT_FOUND");
    expect(d1CostOf(first.headers.get("server-timing")).calls).toBe(1);
    const again = await charge(nobody, 1, withKey("nobody"))();
    expect([again.status, again.headers.get("idempotent-replayed")]).toEqual([404, "true"]);
    expect(again.body).toEqual(first.body);
    const row = await env.DB.prepare("SELECT scope, status_code AS status FROM idempotency_keys WHERE user_id = ? AND key = 'nobody'")
      .bind(nobody)
      .first();
    expect(row).toEqual({ scope: "POST /api/v1/points/charge", status: 404 });
  });
});

describe("a shared charge batch that D1 fails as a whole", () => {
  for (const applied of [false, true]) {
    it(`answers each of its requests 503 and applies nothing twice (the batch ${applied ? "landed, its answer was lost" : "never landed"}); keyed retries then settle it`, async () => {
      const DB = failingSessionBatches((_, n) => n === 2, applied);
      const failingApp = testApp({ DB } as unknown as Record<string, string>, { shareWriteBatches: true });
      const users = await Promise.all(Array.from({ length: 5 }, () => createUser(100)));
      const run = (userId: number, key: string) => () => failingApp.post(CHARGE, { userId, amount: 7 }, withKey(key));
      const { lead, group, batches } = await inOneBatch({
        binding: DB,
        kind: "points.charge",
        lead: run(users[0]!, "lead"),
        group: users.slice(1).map((u) => run(u, `k${u}`)),
      });
      expect(batches).toBe(2);
      expect(lead.status).toBe(200);
      for (const r of group) {
        expect(r.status).toBe(503);
        expect(r.headers.get("retry-after")).toBe("1");
      }
      for (const u of users.slice(1))
        expect(await pointsState(u)).toEqual(applied ? { balance: 107, history: 2 } : { balance: 100, history: 1 });
      // The clients retry with their keys: a landed batch is replayed, one that never landed is applied now; once either way.
      const retried = await Promise.all(users.slice(1).map((u) => run(u, `k${u}`)()));
      for (const [i, r] of retried.entries()) {
        expect(r.status).toBe(200);
        expect(r.body.data).toEqual({ userId: users[i + 1], balance: 107 });
        expect(r.headers.get("idempotent-replayed")).toBe(applied ? "true" : null);
      }
      for (const u of users.slice(1)) expect(await pointsState(u)).toEqual({ balance: 107, history: 2 });
      expect(groupCommitter(DB, "points.charge").stats.failed).toBe(1);
    });
  }
});
