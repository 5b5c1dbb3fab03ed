import { describe, expect, it } from "vitest";
import { RelaySoon } from "../../src/events/relay-soon";

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
    const soon = new RelaySoon();
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
    const soon = new RelaySoon();
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
