import { SubrequestBudget } from "./budget";
import { IdempotencyRepo, type IdempotencyStore } from "./idempotency.repo";
import { runRounds, type RoundsReport } from "./rounds";

/** Expired keys one purge round deletes (one D1 statement, through `idempotency_keys_expires_idx`). */
export const IDEMPOTENCY_PURGE_BATCH = 1_000;
/**
 * Rounds a purge run may make, of the every-minute cron invocation's 1,000 subrequests (order
 * maintenance takes 800, the outbox relay 30): 10 x 1,000 = 10,000 keys a minute, 14.4 million a
 * day, while each keyed write request leaves one key that expires 24 h later.
 */
export const IDEMPOTENCY_PURGE_SUBREQUESTS = 10;
/** No purge round starts this long after the run began. */
export const IDEMPOTENCY_PURGE_TIME_BUDGET_MS = 5_000;

/** Keys the purge deleted, with its rounds and why it stopped. */
export interface IdempotencyPurgeReport extends RoundsReport {
  keys: number;
}

export interface IdempotencyPurgeOptions {
  store: IdempotencyStore;
  now: number;
  batchSize?: number;
  /** A fresh IDEMPOTENCY_PURGE_SUBREQUESTS budget when absent. */
  budget?: SubrequestBudget;
  clock?: () => number;
}

/** Deletes expired keys in rounds while a round finds a full batch, inside the budgets. */
export async function purgeIdempotencyKeys(opts: IdempotencyPurgeOptions): Promise<IdempotencyPurgeReport> {
  const limit = opts.batchSize ?? IDEMPOTENCY_PURGE_BATCH;
  const clock = opts.clock ?? Date.now;
  let keys = 0;
  const report = await runRounds({
    cost: 1,
    budget: opts.budget ?? new SubrequestBudget(IDEMPOTENCY_PURGE_SUBREQUESTS),
    deadline: clock() + IDEMPOTENCY_PURGE_TIME_BUDGET_MS,
    clock,
    round: async () => {
      const n = await opts.store.purgeExpired(opts.now, limit);
      keys += n;
      return n >= limit;
    },
  });
  return { keys, ...report };
}

/**
 * Deletes idempotency keys whose 24 h are over: a replay after that is not
 * promised, and an expired row would otherwise live forever. Returns how many went.
 */
export async function purgeExpiredIdempotencyKeys(d1: D1Database, now: number): Promise<number> {
  return (await purgeIdempotencyKeys({ store: new IdempotencyRepo(d1), now })).keys;
}

/** Cron job (`* * * * *`, see jobs.ts); its report is the job's `job done` result. */
export function purgeIdempotencyKeysJob(services: { idempotency: IdempotencyStore; clock: () => number }): Promise<IdempotencyPurgeReport> {
  return purgeIdempotencyKeys({ store: services.idempotency, now: services.clock(), clock: services.clock });
}
