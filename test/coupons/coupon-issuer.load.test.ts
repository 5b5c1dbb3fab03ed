import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import type { CouponIssuer } from "../../src/coupons/coupon-issuer.do";
import { IssuanceRepo, LOAD_PAGE_ROWS } from "../../src/coupons/issuance.repo";
import { d1State, insertUsers, issue, issuerOf } from "./support";

/** Two full pages and a part: the load needs three steps. */
const ROWS = 2 * LOAD_PAGE_ROWS + 500;

/**
 * A coupon that reached D1 without the admin API (an import, an older version, an object whose
 * storage was lost), already issued to `rows` users: its object loads them on first use.
 */
async function importedCoupon(opts: { quantity: number; rows: number }): Promise<{ couponId: number; holders: number[] }> {
  const t = Date.now();
  const couponId = (await env.DB.prepare(
    `INSERT INTO coupons (name, discount_type, discount_value, quantity, issued_quantity, starts_at, ends_at, valid_days, created_at)
     VALUES ('imported', 'AMOUNT', 1000, ?3, 0, ?1, ?2, 7, ?1) RETURNING id`,
  )
    .bind(t - 3_600_000, t + 86_400_000, opts.quantity)
    .first<number>("id"))!;
  const holders = await insertUsers(opts.rows);
  for (let i = 0; i < holders.length; i += 1_000) {
    await env.DB.prepare("INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) SELECT value, ?1, ?2, ?3 FROM json_each(?4)")
      .bind(couponId, t, t + 86_400_000, JSON.stringify(holders.slice(i, i + 1_000)))
      .run();
  }
  return { couponId, holders };
}

/** Gives the object a real IssuanceRepo over a D1 that records, per call, the rows each statement returned. */
async function recordD1Reads(couponId: number): Promise<number[][]> {
  const calls: number[][] = [];
  const recording = {
    prepare: (query: string) => env.DB.prepare(query),
    batch: async (statements: D1PreparedStatement[]) => {
      const results = await env.DB.batch(statements);
      calls.push(results.map((r) => r.results.length));
      return results;
    },
  } as unknown as D1Database;
  await runInDurableObject(issuerOf(couponId), (instance: CouponIssuer) => {
    instance.store = new IssuanceRepo(recording);
  });
  return calls;
}

/**
 * Wraps the object's D1 adapter (inside the object, where its I/O lives): load step `failOn`
 * throws (D1 unreachable), step `hold` waits for `release()` (`held` resolves when it has
 * started). `rows` lists the rows of each step that answered.
 */
function steppedLoad(instance: CouponIssuer, opts: { failOn?: number; hold?: number }) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reached!: () => void;
  const held = new Promise<void>((resolve) => (reached = resolve));
  const probe = { rows: [] as number[], held, release };
  const real = instance.store;
  let steps = 0;
  instance.store = {
    project: (id, records, at) => real.project(id, records, at),
    updateQuantity: (id, quantity, version) => real.updateQuantity(id, quantity, version),
    loadPage: async (id, step) => {
      const n = ++steps;
      if (n === opts.failOn) throw new Error("D1 unavailable (simulated)");
      if (n === opts.hold) {
        reached();
        await gate;
      }
      const page = await real.loadPage(id, step);
      probe.rows.push(page?.rows.length ?? -1);
      return page;
    },
  };
  return probe;
}

describe("CouponIssuer first load of a coupon D1 already issued", () => {
  it(`reads ${ROWS} issuances in bounded steps: three D1 calls of at most ${LOAD_PAGE_ROWS} rows, each row once`, async () => {
    const { couponId, holders } = await importedCoupon({ quantity: ROWS + 10, rows: ROWS });
    const stub = issuerOf(couponId);
    const calls = await recordD1Reads(couponId);

    expect(await stub.prime(couponId)).toMatchObject({ ok: true });
    // Each step: the coupon's definition (1 row) and a page of its rows; the first also recounts issued_quantity (0 rows).
    expect(calls).toEqual([
      [0, 1, LOAD_PAGE_ROWS],
      [1, LOAD_PAGE_ROWS],
      [1, 500],
    ]);
    const state = await stub.state();
    expect(state).toMatchObject({ quantity: ROWS + 10, issued: ROWS, held: ROWS + 10, unsynced: 0 });
    expect(state.users).toEqual([...holders].sort((a, b) => a - b));
    expect(await d1State(couponId)).toMatchObject({ issuedQuantity: ROWS, quantity: ROWS + 10 });
  });

  it("resumes an interrupted load at its cursor (a D1 failure, then an eviction), and requests that arrive during the load wait: no double issue, nothing beyond the quantity", async () => {
    const { couponId, holders } = await importedCoupon({ quantity: ROWS + 2, rows: ROWS });
    const fresh = await insertUsers(3);
    const stub = issuerOf(couponId);

    const first = await runInDurableObject(stub, (instance: CouponIssuer) => steppedLoad(instance, { failOn: 2 }));
    const cut = await issue(couponId, fresh[0]!);
    expect([cut.status, cut.body.error, cut.headers.get("retry-after")]).toEqual([503, "SERVICE_UNAVAILABLE", "1"]);
    expect(first.rows).toEqual([LOAD_PAGE_ROWS]);
    expect(await stub.state(), "nothing decided before the load has finished").toMatchObject({ couponId: null, issued: 0 });

    await evictDurableObject(stub);
    // A holder whose row is in the last page, and three newcomers for the last two units, all asking while the load runs
    // (called on the object itself, so the test knows they are all waiting before the last step answers).
    const late = holders[holders.length - 1]!;
    const { rows, outcomes } = await runInDurableObject(stub, async (instance: CouponIssuer) => {
      const second = steppedLoad(instance, { hold: 2 });
      const asks = [late, ...fresh].map((u) => instance.issue({ couponId, userId: u, now: Date.now() }));
      await second.held;
      second.release();
      const answers = await Promise.all(asks);
      return { rows: second.rows, outcomes: answers.map((a) => (a.ok ? "ok" : a.code)) };
    });
    expect(rows, "resumed at the cursor: the first page is not read again").toEqual([LOAD_PAGE_ROWS, 500]);
    expect(outcomes[0]).toBe("COUPON_ALREADY_ISSUED");
    expect([...outcomes.slice(1)].sort()).toEqual(["COUPON_SOLD_OUT", "ok", "ok"]);
    const state = await stub.state();
    expect(state).toMatchObject({ quantity: ROWS + 2, issued: ROWS + 2, unsynced: 0 });
    expect(state.users).toHaveLength(ROWS + 2);
    expect(await d1State(couponId)).toMatchObject({ users: state.users, issuedQuantity: ROWS + 2, quantity: ROWS + 2 });
  });
});
