import { describe, expect, it } from "vitest";
import { BATCH_INTERVAL_MS, GROUP_ROWS, IssuanceProjection, type ProjectionHost } from "../../src/coupons/issuance-projection";
import type { IssuanceRecord, IssuanceStore } from "../../src/coupons/issuance.repo";

/**
 * The pacing of one shard's D1 batches, with the clock and the timer in the test's hands
 * (issue 17: a storm must cost D1 a bounded number of write transactions per shard).
 * Everything here is promise-driven, no I/O: one macrotask turn settles it.
 */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
const win = (userId: number): IssuanceRecord => ({ userId, issuedAt: 0, expiresAt: 1 });

/** `pace`: the host's window, BATCH_INTERVAL_MS as for a sharded coupon unless given. */
function harness(pace = BATCH_INTERVAL_MS) {
  let now = 0;
  const batches: number[][] = [];
  const answers: (() => void)[] = [];
  const waits: number[] = [];
  const timers: (() => void)[] = [];
  const store: IssuanceStore = {
    loadPage: async () => undefined,
    updateQuantity: async () => {},
    project: (_couponId, records) => {
      batches.push(records.map((r) => r.userId));
      return new Promise((resolve) => answers.push(() => resolve(new Map(records.map((r) => [r.userId, r.userId * 10])))));
    },
  };
  const host: ProjectionHost = {
    sql: { exec: () => ({ rowsWritten: 0, toArray: () => [] }) } as unknown as SqlStorage,
    store: () => store,
    couponId: () => 1,
    tx: (body) => body(),
    rolledBack: () => {},
    committed: async () => {},
    failed: async () => {},
    paceMs: () => pace,
  };
  const projection = new IssuanceProjection(host, {
    clock: () => now,
    wait: (ms) => {
      waits.push(ms);
      return new Promise((resolve) => timers.push(resolve));
    },
  });
  return {
    projection,
    batches,
    waits,
    at: (ms: number) => (now = ms),
    /** D1 answers the batch in flight. */
    answer: async () => {
      answers.shift()!();
      await settle();
    },
    /** The pending gathering timer fires. */
    fire: async () => {
      timers.shift()!();
      await settle();
    },
  };
}

describe("a CouponIssuer shard's D1 batches (group commit with a pacing window)", () => {
  it(`sends a win on an idle shard at once, and gathers the wins that arrive meanwhile until ${BATCH_INTERVAL_MS} ms after the previous batch started`, async () => {
    const h = harness();
    const first = h.projection.project([win(1)]);
    await settle();
    expect(h.batches).toEqual([[1]]);

    h.at(20);
    const later = [2, 3].map((u) => h.projection.project([win(u)]));
    await h.answer(); // D1 answered the first batch at t = 20 ms: the next one waits for the window
    expect(await first).toEqual(new Map([[1, 10]]));
    expect(h.batches).toEqual([[1]]);
    expect(h.waits).toEqual([BATCH_INTERVAL_MS - 20]);

    const fourth = h.projection.project([win(4)]);
    h.at(BATCH_INTERVAL_MS);
    await h.fire();
    expect(h.batches, "one batch for everything gathered").toEqual([[1], [2, 3, 4]]);
    await h.answer();
    expect((await Promise.all([...later, fourth])).map((ids) => ids?.size)).toEqual([3, 3, 3]);

    // The shard is idle again a window later: the next win goes at once.
    h.at(2 * BATCH_INTERVAL_MS + 1);
    void h.projection.project([win(5)]);
    await settle();
    expect(h.batches).toEqual([[1], [2, 3, 4], [5]]);
    expect(h.waits).toHaveLength(1);
  });

  it("an unsharded coupon (pace 0) never waits: the next batch goes as soon as D1 answers the one in flight", async () => {
    const h = harness(0);
    void h.projection.project([win(1)]);
    await settle();
    h.at(20);
    const later = [2, 3].map((u) => h.projection.project([win(u)]));
    await h.answer();
    expect(h.waits).toEqual([]);
    expect(h.batches).toEqual([[1], [2, 3]]);
    await h.answer();
    expect((await Promise.all(later)).map((ids) => ids?.size)).toEqual([2, 2]);
  });

  it(`never holds back a full batch (${GROUP_ROWS} rows): a storm is written as fast as D1 answers`, async () => {
    const h = harness();
    void h.projection.project([win(1)]);
    await settle();
    h.at(10);
    for (let u = 2; u < 2 + GROUP_ROWS; u++) void h.projection.project([win(u)]);
    await h.answer();
    expect(h.waits, "no gathering wait for a full batch").toEqual([]);
    expect(h.batches.map((b) => b.length)).toEqual([1, GROUP_ROWS]);

    // A partial batch that fills up while it gathers goes at once, before its timer fires.
    await h.answer();
    h.at(20);
    for (let u = 1_000; u < 1_040; u++) void h.projection.project([win(u)]);
    await settle();
    expect(h.waits).toEqual([BATCH_INTERVAL_MS - 10]);
    expect(h.batches).toHaveLength(2);
    for (let u = 2_000; u < 2_000 + GROUP_ROWS - 40; u++) void h.projection.project([win(u)]);
    await settle();
    expect(h.batches.map((b) => b.length)).toEqual([1, GROUP_ROWS, GROUP_ROWS]);
  });
});
