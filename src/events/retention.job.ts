import { SubrequestBudget } from "../shared/budget";
import { runRounds, type RoundsReport } from "../shared/rounds";

/**
 * Retention of the event tables, which otherwise grow with every payment:
 * published outbox rows, delivery records (the consumer's de-duplication) and
 * dead letters already replayed, each deleted once older than the retention
 * (EVENT_RETENTION_DAYS, at least 1: far longer than any queue redelivery, which
 * ends within minutes, so a delivery record is never dropped while a duplicate
 * can still arrive).
 *
 * A round is one D1 batch deleting up to RETENTION_BATCH rows per table, oldest
 * first; a run repeats rounds while some table still gives a full batch, inside
 * RETENTION_SUBREQUESTS and RETENTION_TIME_BUDGET_MS. Each round finds its rows
 * through an index range that holds only rows past the retention, so it reads
 * what it deletes, and a run with nothing due reads a few rows however large the
 * tables are.
 *
 * The arithmetic (the ten-minute cron in jobs.ts runs 144 times a day):
 * - steady 1,000,000 events a day: 1,000,000 / 144 = 6,945 rows a table a run,
 *   7 rounds; the tables hold the retention's worth plus at most one run's inflow;
 * - a backlog of 1,000,000: 1,000 rounds, 7 runs at RETENTION_SUBREQUESTS = 150
 *   rounds a run (70 minutes), on top of the steady load;
 * - the ceiling: 150 rounds x 1,000 = 150,000 rows a table a run, 21.6 million a
 *   day. The time budget binds first only if a round takes more than 67 ms; even
 *   at 500 ms a round (20 rounds a run, 2.88 million a day) a 1,000,000 backlog
 *   clears within a day on top of a steady 1,000,000 a day.
 */
export const RETENTION_BATCH = 1_000;
/**
 * Rounds (one D1 batch each) a run may make, of the invocation's 1,000 subrequests;
 * the ten-minute cron's other jobs take at most 2 (ranking repair) and 20 (failed-orders purge).
 */
export const RETENTION_SUBREQUESTS = 150;
/** No round starts this long after the run began: each round is a write transaction on the one D1 primary. */
export const RETENTION_TIME_BUDGET_MS = 10_000;

/** Rows deleted per table, with the rounds run and why the run stopped. */
export interface RetentionReport extends RoundsReport {
  outbox: number;
  deliveries: number;
  deadLetters: number;
}

type Table = "outbox" | "deliveries" | "deadLetters";

/**
 * One table's delete of up to ?2 rows past the cut-off ?1, each through an index whose
 * range holds only such rows:
 * - outbox: `outbox_status_next_idx (status, next_attempt_at, id)`. The relay marks a row
 *   PUBLISHED with published_at = the `now` of the claim that set next_attempt_at =
 *   now + lease, so a PUBLISHED row's published_at <= next_attempt_at and the range
 *   next_attempt_at < ?1 holds only rows published before the cut-off (one published in
 *   the last lease before it goes on the next run). No index of its own: published_at
 *   would cost a write on every publish and every delete.
 * - deliveries: `event_deliveries_delivered_at_idx`;
 * - dead letters: the partial `dead_letters_replayed_at_idx` (replayed rows only).
 */
const DELETES: Record<Table, string> = {
  outbox: `DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE status = 'PUBLISHED' AND next_attempt_at < ?1 AND published_at < ?1
             ORDER BY next_attempt_at, id LIMIT ?2)`,
  deliveries: `DELETE FROM event_deliveries WHERE rowid IN (
                 SELECT rowid FROM event_deliveries WHERE delivered_at < ?1 ORDER BY delivered_at LIMIT ?2)`,
  deadLetters: `DELETE FROM dead_letters WHERE id IN (
                  SELECT id FROM dead_letters WHERE replayed_at IS NOT NULL AND replayed_at < ?1 ORDER BY replayed_at LIMIT ?2)`,
};

export interface RetentionOptions {
  d1: D1Database;
  now: number;
  retentionMs: number;
  /** Rows per table per round (RETENTION_BATCH). */
  batchSize?: number;
  /** A fresh RETENTION_SUBREQUESTS budget when absent. */
  budget?: SubrequestBudget;
  timeBudgetMs?: number;
  /** Wall clock for the time budget (tests move it). */
  clock?: () => number;
}

/** Deletes what is past the retention in rounds, each table until it gives less than a full batch. */
export async function purgeEventTables(opts: RetentionOptions): Promise<RetentionReport> {
  const { d1 } = opts;
  const before = opts.now - opts.retentionMs;
  const limit = opts.batchSize ?? RETENTION_BATCH;
  const clock = opts.clock ?? Date.now;
  const deleted: Record<Table, number> = { outbox: 0, deliveries: 0, deadLetters: 0 };
  // Tables whose last round gave a full batch: only they are asked again.
  let open = Object.keys(DELETES) as Table[];
  const report = await runRounds({
    cost: 1,
    budget: opts.budget ?? new SubrequestBudget(RETENTION_SUBREQUESTS),
    deadline: clock() + (opts.timeBudgetMs ?? RETENTION_TIME_BUDGET_MS),
    clock,
    round: async () => {
      const results = await d1.batch(open.map((t) => d1.prepare(DELETES[t]).bind(before, limit)));
      open = open.filter((t, i) => {
        const n = results[i]!.meta.changes;
        deleted[t] += n;
        return n >= limit;
      });
      return open.length > 0;
    },
  });
  return { ...deleted, ...report };
}
