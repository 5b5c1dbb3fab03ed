import type { RelayResult } from "./outbox.relay";

/** Relays (each a bounded `relayOutbox`) one run makes at most: the rest waits for the next request's run or the cron. */
export const RELAY_ROUNDS_PER_RUN = 5;
/** No relay of a run starts this long after the run started. */
export const RELAY_RUN_BUDGET_MS = 10_000;
/**
 * A run lives in the `waitUntil` of the request that started it, which the runtime cuts 30 s
 * after the answer, and a cut run never settles. So a run holds a lease: past it, the run is
 * presumed cut, the next request starts a fresh one, and requests that joined it stop waiting.
 * Longer than the budget plus one relay, shorter than the runtime's limit.
 */
export const RELAY_LEASE_MS = 25_000;

/**
 * A follow-up relay (for requests that came during a round) waits this long first, so a storm's
 * commits gather into fewer rounds: each round is two D1 writes (claim, then mark published) and a
 * queue send, whatever its row count. A lone commit's first relay starts at once.
 */
export const RELAY_GATHER_MS = 50;

const NOTHING: RelayResult = { published: 0, failed: 0 };

export interface RelaySoonOptions {
  clock?: () => number;
  /** Resolves after `ms` (a timer; a test seam). */
  wait?: (ms: number) => Promise<void>;
  /** How long a follow-up relay gathers first (RELAY_GATHER_MS; 0 in tests that count rounds). */
  gatherMs?: number;
}

interface Run {
  startedAt: number;
  leaseUntil: number;
  /** Whether a request came during the run (one more relay sees its rows). */
  again: boolean;
  done: Promise<RelayResult>;
}

/**
 * Coalesces the relays that commits ask for, per Worker isolate: at most one
 * run at a time, and requests that arrive while it runs are served by one more
 * relay in it (which sees every row committed before it started). Without this,
 * a storm of payments started one relay per payment, each claiming and marking
 * rows in its own D1 writes: three background D1 transactions per payment
 * competing with the payments themselves. Each run is bounded (RELAY_ROUNDS_PER_RUN
 * relays, RELAY_RUN_BUDGET_MS) and leased (RELAY_LEASE_MS), so no run outlives the
 * invocation that carries it and a cut one never blocks the isolate's later runs.
 * Delivery stays at least once and prompt; the every-minute cron is the safety net.
 */
export class RelaySoon {
  private run: Run | undefined;
  private relay: () => Promise<RelayResult> = async () => NOTHING;
  private readonly clock: () => number;
  private readonly wait: (ms: number) => Promise<void>;
  private readonly gatherMs: number;

  constructor(opts: RelaySoonOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.wait = opts.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.gatherMs = opts.gatherMs ?? RELAY_GATHER_MS;
  }

  /**
   * Asks for a relay (the latest caller's `relay` is the one run next: its transport and
   * clock). Starts a run, or joins the one running: then resolves when a relay that started
   * after this call has finished, or when the run's lease ends (nothing: the run was cut,
   * or stopped at its bound; the next request's run or the cron relays those rows).
   */
  request(relay: () => Promise<RelayResult>): Promise<RelayResult> {
    this.relay = relay;
    const t = this.clock();
    const running = this.run;
    if (running && t < running.leaseUntil) {
      running.again = true;
      return Promise.race([running.done, this.wait(running.leaseUntil - t).then(() => NOTHING)]);
    }
    const run: Run = { startedAt: t, leaseUntil: t + RELAY_LEASE_MS, again: false, done: Promise.resolve(NOTHING) };
    this.run = run;
    run.done = this.loop(run).finally(() => {
      if (this.run === run) this.run = undefined;
    });
    return run.done;
  }

  private async loop(run: Run): Promise<RelayResult> {
    const total: RelayResult = { published: 0, failed: 0 };
    for (let rounds = 1; ; rounds++) {
      run.again = false;
      const r = await this.relay();
      total.published += r.published;
      total.failed += r.failed;
      if (r.failed > 0) break; // the transport is failing: leave the rest to the cron's backoff
      if (!run.again || this.run !== run) break; // nothing asked meanwhile, or a fresh run took over
      if (rounds >= RELAY_ROUNDS_PER_RUN || this.clock() >= run.startedAt + RELAY_RUN_BUDGET_MS) break;
      // The run's own timer (this request's): the requests that come meanwhile join the next round.
      if (this.gatherMs > 0) await this.wait(this.gatherMs);
    }
    return total;
  }
}
