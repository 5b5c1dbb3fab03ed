import { afterEach, describe, expect, it, vi } from "vitest";
import { D1UnavailableError, GROUP_LIMITS, GroupCommitter, POLL_MAX_MS, type GroupMember } from "../../src/shared/group-commit";

/**
 * The group-commit queue on its own (src/shared/group-commit.ts): who sends which batch,
 * how results are dealt out, and what a failed batch does. The "database" is a fake that
 * records every batch it was sent; statements are tagged objects, results echo their tag.
 * Timing is never waited on: `hold()` keeps a formed batch from being sent and
 * `whenQueued(n)` says when n members wait, so every grouping below is deterministic (waiting
 * members look at the queue on their own short timers, src/shared/group-commit.ts).
 */
type Tagged = D1PreparedStatement & { tag: string };
const stmt = (tag: string) => ({ tag }) as Tagged;

function fakeD1(fail?: (tags: string[]) => Error | undefined) {
  const sent: string[][] = [];
  const send = async (statements: D1PreparedStatement[]) => {
    const tags = statements.map((s) => (s as Tagged).tag);
    sent.push(tags);
    const err = fail?.(tags);
    if (err) throw err;
    return tags.map((tag) => ({ success: true, results: [{ tag }], meta: { changed_db: true, rows_written: 1 } }) as unknown as D1Result);
  };
  return { sent, send };
}

function member(d1: ReturnType<typeof fakeD1>, ...tags: string[]): GroupMember {
  return { statements: tags.map(stmt), send: d1.send, bookmark: () => null };
}

describe("group commit queue", () => {
  it("sends a lone request at once, alone, and it pays the write transaction", async () => {
    const q = new GroupCommitter();
    const d1 = fakeD1();
    const share = await q.submit(member(d1, "a1", "a2"));
    expect(d1.sent).toEqual([["a1", "a2"]]);
    expect(share).toMatchObject({ size: 1, sent: true, wrote: true });
    expect(share.results.map((r) => r.results[0])).toEqual([{ tag: "a1" }, { tag: "a2" }]);
    expect(q.stats).toEqual({ batches: 1, requests: 1, largest: 1, split: 0, failed: 0 });
  });

  it("puts every request that arrives while a batch is in flight into the next one, and deals each its own results", async () => {
    const q = new GroupCommitter();
    const d1 = fakeD1();
    const release = q.hold();
    const first = q.submit(member(d1, "a"));
    const rest = ["b", "c", "d", "e"].map((t) => q.submit(member(d1, `${t}1`, `${t}2`)));
    await q.whenQueued(4);
    release();
    const shares = await Promise.all([first, ...rest]);
    expect(d1.sent).toEqual([["a"], ["b1", "b2", "c1", "c2", "d1", "d2", "e1", "e2"]]);
    expect(shares.map((s) => s.size)).toEqual([1, 4, 4, 4, 4]);
    // Exactly one member of each batch pays its write transaction: a sent the first; the second, which a's
    // request relayed as soon as the first landed, is paid by its oldest member, b.
    expect(shares.map((s) => s.sent)).toEqual([true, true, false, false, false]);
    expect(shares[3]!.results.map((r) => r.results[0])).toEqual([{ tag: "d1" }, { tag: "d2" }]);
    expect(q.stats).toMatchObject({ batches: 2, requests: 5, largest: 4 });
  });

  it("keeps a batch within its limits: 40 waiting requests go out as 32 and 8", async () => {
    const q = new GroupCommitter({ requests: 32, statements: 256, stallMs: 30_000 });
    const d1 = fakeD1();
    const release = q.hold();
    const first = q.submit(member(d1, "x"));
    const waiting = Array.from({ length: 40 }, (_, i) => q.submit(member(d1, `m${i}`)));
    await q.whenQueued(40);
    release();
    await Promise.all([first, ...waiting]);
    expect(d1.sent.map((b) => b.length)).toEqual([1, 32, 8]);
  });

  it("retries each member alone after a constraint abort (nothing was applied): only the culprit fails", async () => {
    const q = new GroupCommitter();
    const d1 = fakeD1((tags) =>
      tags.includes("bad") ? new Error("D1_ERROR: CHECK constraint failed: batch_guards_ok: SQLITE_CONSTRAINT") : undefined,
    );
    const release = q.hold();
    const first = q.submit(member(d1, "a"));
    const group = [q.submit(member(d1, "b")), q.submit(member(d1, "bad")), q.submit(member(d1, "c"))];
    await q.whenQueued(3);
    release();
    const outcomes = await Promise.allSettled([first, ...group]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
    // The shared batch, then each member alone: b and c once each in a batch that landed.
    expect(d1.sent).toEqual([["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]);
    expect((outcomes[2] as PromiseRejectedResult).reason.message).toContain("constraint failed");
    expect(q.stats).toMatchObject({ split: 1 });
  });

  it("answers every member D1UnavailableError when a batch fails otherwise (it may have landed), and never sends it again", async () => {
    const q = new GroupCommitter();
    const d1 = fakeD1((tags) => (tags.includes("b") ? new Error("D1_ERROR: Network connection lost") : undefined));
    const release = q.hold();
    const first = q.submit(member(d1, "a"));
    const group = ["b", "c", "d"].map((t) => q.submit(member(d1, t)));
    await q.whenQueued(3);
    release();
    const outcomes = await Promise.allSettled([first, ...group]);
    expect(outcomes[0]!.status).toBe("fulfilled");
    for (const o of outcomes.slice(1)) {
      expect(o.status).toBe("rejected");
      expect((o as PromiseRejectedResult).reason).toBeInstanceOf(D1UnavailableError);
    }
    expect(d1.sent).toEqual([["a"], ["b", "c", "d"]]);
    // The queue goes on: the next request is sent at once.
    await q.submit(member(d1, "e"));
    expect(d1.sent).toHaveLength(3);
    expect(q.stats).toMatchObject({ batches: 3, failed: 1 });
  });

  it("hands every member the bookmark of the session that sent its batch, read after it (here the first request's, which relayed the second batch)", async () => {
    const q = new GroupCommitter();
    const d1 = fakeD1();
    const release = q.hold();
    const first = q.submit({ ...member(d1, "a"), bookmark: () => "00000001-00000000-00000000-00000000000000000000000000000001" });
    const second = q.submit({ ...member(d1, "b"), bookmark: () => "00000002-00000000-00000000-00000000000000000000000000000002" });
    const third = q.submit({ ...member(d1, "c"), bookmark: () => null });
    await q.whenQueued(2);
    release();
    const [a, b, c] = await Promise.all([first, second, third]);
    expect(a.bookmark).toBe("00000001-00000000-00000000-00000000000000000000000000000001");
    // a's request sent b and c's batch from its session the moment its own landed; b, the oldest, pays for it.
    expect([b.sent, c.sent]).toEqual([true, false]);
    expect([b.bookmark, c.bookmark]).toEqual([a.bookmark, a.bookmark]);
  });

  describe("a waiting member goes on only from its own request's timer", () => {
    /**
     * Regression (placement storm on the bench server, 2026-12-07): the sender used to wake its
     * members by resolving promises they awaited. The runtime defers such a continuation to the
     * awaiting request only for promises it tagged with that request, and promises created by
     * TurboFan-optimized code are untagged: once the waiting code was hot, members went on in the
     * sender's request, built their answers there, and workerd failed them ("Cannot perform I/O on
     * behalf of a different request"). The vitest pool turns cross-request promise handling off,
     * so the runtime's side cannot be shown here; what is pinned is that nothing but a member's own
     * timer (`sleep`, called from its own request) ever resumes it.
     */
    function ownTimers() {
      const pending: { ms: number; fire: () => void }[] = [];
      const sleep = (ms: number) => new Promise<void>((fire) => pending.push({ ms, fire }));
      return { pending, sleep };
    }
    const settledYet = async (p: Promise<unknown>) => {
      let settled = false;
      void p.then(
        () => (settled = true),
        () => (settled = true),
      );
      // Plenty of turns (a real timer): anything that could settle it without its own timer has.
      await new Promise((r) => setTimeout(r, 5));
      return settled;
    };

    it("a batch that lands relays the next one at once from its own request, but wakes nobody: each member goes on at its own timer", async () => {
      const timers = ownTimers();
      const q = new GroupCommitter(GROUP_LIMITS, { sleep: timers.sleep });
      const d1 = fakeD1();
      const release = q.hold();
      const first = q.submit(member(d1, "a"));
      const b = q.submit(member(d1, "b1", "b2"));
      const c = q.submit(member(d1, "c1", "c2"));
      expect(timers.pending).toHaveLength(2);
      release();
      await expect(first).resolves.toMatchObject({ size: 1, sent: true });
      // Still batching: b and c went out together, sent by a's request as soon as a's batch landed.
      expect(await settledYet(b)).toBe(false);
      expect(d1.sent).toEqual([["a"], ["b1", "b2", "c1", "c2"]]);
      // Their shares are decided, but neither was resumed by a's request: each waits for its own timer.
      expect(await settledYet(c)).toBe(false);
      timers.pending.shift()!.fire();
      await expect(b).resolves.toMatchObject({ size: 2, sent: true });
      expect(await settledYet(c)).toBe(false);
      timers.pending.shift()!.fire();
      const share = await c;
      expect(share).toMatchObject({ size: 2, sent: false });
      expect(share.results.map((r) => r.results[0])).toEqual([{ tag: "c1" }, { tag: "c2" }]);
      // No D1 call of their own, and nobody sleeps any more.
      expect(d1.sent).toHaveLength(2);
      expect(timers.pending).toHaveLength(0);
    });

    it("when nothing was relayed (the batch failed), the first waiting member to look sends the next batch from its own request", async () => {
      const timers = ownTimers();
      const q = new GroupCommitter(GROUP_LIMITS, { sleep: timers.sleep });
      const d1 = fakeD1((tags) => (tags.includes("x") ? new Error("D1_ERROR: Network connection lost") : undefined));
      const release = q.hold();
      const first = q.submit(member(d1, "x"));
      const next = q.submit({ ...member(d1, "y1", "y2"), bookmark: () => "00000009-00000000-00000000-00000000000000000000000000000009" });
      release();
      await expect(first).rejects.toBeInstanceOf(D1UnavailableError);
      expect(await settledYet(next)).toBe(false);
      expect(d1.sent).toEqual([["x"]]);
      timers.pending.shift()!.fire();
      await expect(next).resolves.toMatchObject({
        size: 1,
        sent: true,
        bookmark: "00000009-00000000-00000000-00000000000000000000000000000009",
      });
      expect(d1.sent).toEqual([["x"], ["y1", "y2"]]);
    });

    it("sleeps until the batch in flight is expected to end (recent batches' duration), then looks every 1 ms, then every quarter of its age (at most 25 ms)", async () => {
      let t = 1_000;
      const q = new GroupCommitter(GROUP_LIMITS, { now: () => t });
      // Thirty lone batches of 8 ms each teach it that a batch takes about 8 ms.
      for (let i = 0; i < 30; i++) {
        await q.submit({
          statements: [stmt(`s${i}`)],
          send: async () => {
            t += 8;
            return [{ success: true, results: [], meta: {} } as unknown as D1Result];
          },
          bookmark: () => null,
        });
      }
      // Sent just now: sleep until it is expected to land; 3 ms ago: 5 ms more.
      expect(q.pollDelay(t)).toBe(8);
      expect(q.pollDelay(t - 3)).toBe(5);
      // Due (or late, up to twice the expected time): look every millisecond.
      expect(q.pollDelay(t - 7)).toBe(1);
      expect(q.pollDelay(t - 9)).toBe(1);
      expect(q.pollDelay(t - 15)).toBe(1);
      // Much later: a quarter of its age, at most POLL_MAX_MS.
      expect(q.pollDelay(t - 20)).toBe(5);
      expect(q.pollDelay(t - 10_000)).toBe(POLL_MAX_MS);
    });
  });

  describe("a sender whose request never comes back", () => {
    afterEach(() => vi.useRealTimers());

    it("fails its batch's members with D1UnavailableError after the stall limit, and the queue moves on", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
      const q = new GroupCommitter({ requests: 32, statements: 256, stallMs: 5_000 });
      const d1 = fakeD1();
      // The first request's own batch lands; the batch it then relays never answers (the runtime cancelled its request).
      let calls = 0;
      const first = q.submit({
        statements: [stmt("first")],
        send: (statements) => (calls++ === 0 ? d1.send(statements) : new Promise<D1Result[]>(() => {})),
        bookmark: () => null,
      });
      const rider = q.submit(member(d1, "rider"));
      await first;
      const later = q.submit(member(d1, "later"));
      const outcomes = Promise.allSettled([rider, later]);
      await vi.advanceTimersByTimeAsync(4_000);
      expect(d1.sent).toEqual([["first"]]);
      await vi.advanceTimersByTimeAsync(2_000);
      const [r, l] = await outcomes;
      // The rider of the lost batch is told its write may or may not have landed; the next request went out.
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(D1UnavailableError);
      expect(l).toMatchObject({ status: "fulfilled", value: { size: 1, sent: true } });
      expect(d1.sent).toEqual([["first"], ["later"]]);
      expect(q.stats).toMatchObject({ failed: 1 });
    });
  });
});
