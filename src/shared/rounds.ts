import type { SubrequestBudget } from "./budget";

/**
 * Why a run of rounds ended: `null` when the work ran out (a round found less than a
 * full batch), otherwise the limit that stopped it with work possibly left for the next
 * run: the invocation's subrequest budget, or the run's time budget.
 */
export type StoppedOn = "subrequests" | "time" | null;

/** What a run of rounds did, for a job's `job done` line. */
export interface RoundsReport {
  rounds: number;
  stoppedOn: StoppedOn;
}

export interface RoundsOptions {
  /** Subrequests one round costs (a D1 batch is one). */
  cost: number;
  /** Shared with whatever else the invocation spends; a round starts only when `cost` fits. */
  budget: SubrequestBudget;
  /** No round starts at or after this instant (`clock()` time). */
  deadline: number;
  clock: () => number;
  /** One bounded step of work; true when it found a full batch (so there may be more). */
  round: () => Promise<boolean>;
}

/**
 * Repeats a bounded round while each one finds a full batch, inside a subrequest
 * budget and a deadline: a backlog is worked off as fast as one invocation allows,
 * and nothing is left half-done (each round is its own D1 transaction). A round
 * that throws ends the run with the error; earlier rounds stay done.
 */
export async function runRounds(opts: RoundsOptions): Promise<RoundsReport> {
  let rounds = 0;
  for (;;) {
    if (opts.clock() >= opts.deadline) return { rounds, stoppedOn: "time" };
    if (!opts.budget.take(opts.cost)) return { rounds, stoppedOn: "subrequests" };
    rounds++;
    if (!(await opts.round())) return { rounds, stoppedOn: null };
  }
}
