import { describe, expect, it } from "vitest";
import { RELAY_GATHER_MS, RELAY_LEASE_MS, RELAY_ROUNDS_PER_RUN, RELAY_RUN_BUDGET_MS, RelaySoon } from "../../src/events/relay-soon";

/** A relay whose runs finish when the test says so. */
function controlledRelay() {
  const pending: (() => void)[] = [];
  let runs = 0;
  const relay = () =>
    new Promise<{ published: number; failed: number }>((resolve) => {
      runs++;
      pending.push(() => resolve({ published: 1, failed: 0 }));
    });
  const finishOne = async () => {
    pending.shift()!();
    await new Promise((r) => setTimeout(r, 0));
  };
  return { relay, finishOne, runs: () => runs };
}

describe("RelaySoon: one relay at a time per isolate", () => {
  it("serves 50 requests made during a run with exactly one more run", async () => {
    const r = controlledRelay();
    const soon = new RelaySoon({ gatherMs: 0 });
    const first = soon.request(r.relay);
    const during = Array.from({ length: 50 }, () => soon.request(r.relay));
    expect(r.runs()).toBe(1);
    await r.finishOne();
    expect(r.runs()).toBe(2); // the follow-up run for everything asked meanwhile
    await r.finishOne();
    const results = await Promise.all([first, ...during]);
    expect(results.every((x) => x.published === 2)).toBe(true);
    expect(r.runs()).toBe(2);
    // A request after the runs finished starts a new one.
    const later = soon.request(r.relay);
    expect(r.runs()).toBe(3);
    await r.finishOne();
    expect((await later).published).toBe(1);
  });

  it("stops following up while the transport fails (the cron's backoff takes over)", async () => {
    let runs = 0;
    const soon = new RelaySoon({ gatherMs: 0 });
    const failing = async () => {
      runs++;
      return { published: 0, failed: 3 };
    };
    const a = soon.request(failing);
    const b = soon.request(failing);
    expect(await a).toEqual({ published: 0, failed: 3 });
    expect(await b).toEqual({ published: 0, failed: 3 });
    expect(runs).toBe(1);
  });
});

describe("RelaySoon: bounded per invocation (a waitUntil the runtime cuts after 30 s)", () => {
  /** A clock and timers the test drives. */
  function testTime() {
    let now = 1_000_000;
    const timers: { at: number; fire: () => void }[] = [];
    return {
      clock: () => now,
      wait: (ms: number) => new Promise<void>((fire) => timers.push({ at: now + ms, fire })),
      advance(ms: number) {
        now += ms;
        for (const t of timers.filter((x) => x.at <= now)) t.fire();
      },
    };
  }

  it(`makes at most ${RELAY_ROUNDS_PER_RUN} relays per run however many requests keep coming; the next request starts a new run`, async () => {
    const time = testTime();
    const soon = new RelaySoon({ ...time, gatherMs: 0 });
    let runs = 0;
    // Every relay is followed by another payment's request while it runs: a storm that never lets up.
    const relay = async () => {
      runs++;
      void soon.request(relay);
      return { published: 1, failed: 0 };
    };
    expect(await soon.request(relay)).toEqual({ published: RELAY_ROUNDS_PER_RUN, failed: 0 });
    expect(runs).toBe(RELAY_ROUNDS_PER_RUN);
    await soon.request(async () => ({ published: 7, failed: 0 })).then((r) => expect(r.published).toBe(7));
  });

  it(`starts no relay ${RELAY_RUN_BUDGET_MS} ms after its run started`, async () => {
    const time = testTime();
    const soon = new RelaySoon({ ...time, gatherMs: 0 });
    let runs = 0;
    const slow = async () => {
      runs++;
      time.advance(RELAY_RUN_BUDGET_MS / 2); // each relay takes half the budget
      void soon.request(slow);
      return { published: 1, failed: 0 };
    };
    expect((await soon.request(slow)).published).toBe(2);
    expect(runs).toBe(2);
  });

  it(`a follow-up relay gathers ${RELAY_GATHER_MS} ms first: the requests of that time share one round`, async () => {
    const time = testTime();
    const soon = new RelaySoon(time);
    let runs = 0;
    let release!: () => void;
    const relay = () => {
      runs++;
      return runs === 1
        ? new Promise<{ published: number; failed: number }>((resolve) => (release = () => resolve({ published: 1, failed: 0 })))
        : Promise.resolve({ published: 20, failed: 0 });
    };
    const first = soon.request(relay);
    expect(runs, "a lone request's relay starts at once").toBe(1);
    const duringRound = soon.request(relay);
    release();
    await new Promise((r) => setTimeout(r, 0));
    const duringGather = Array.from({ length: 19 }, () => soon.request(relay));
    expect(runs, "the follow-up waits for the gather").toBe(1);
    time.advance(RELAY_GATHER_MS);
    const all = await Promise.all([first, duringRound, ...duringGather]);
    expect(runs, "one follow-up round for all of them").toBe(2);
    expect(all.every((r) => r.published === 21)).toBe(true);
  });

  it("a run the runtime cut (it never settles) does not stay running: its lease ends, joiners stop waiting, the next request relays", async () => {
    const time = testTime();
    const soon = new RelaySoon({ ...time, gatherMs: 0 });
    let runs = 0;
    const cut = () => {
      runs++;
      return new Promise<{ published: number; failed: number }>(() => {});
    };
    void soon.request(cut);
    time.advance(RELAY_LEASE_MS - 1);
    const joiner = soon.request(cut);
    expect(runs, "within the lease a request joins the run").toBe(1);
    time.advance(1);
    expect(await joiner).toEqual({ published: 0, failed: 0 });
    const fresh = soon.request(async () => {
      runs++;
      return { published: 3, failed: 0 };
    });
    expect(await fresh).toEqual({ published: 3, failed: 0 });
    expect(runs).toBe(2);
  });
});
