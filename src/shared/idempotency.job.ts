import { IdempotencyRepo, type IdempotencyStore } from "./idempotency.repo";
import { log } from "./logger";

/** Deletes expired keys in bounded rounds of 1,000 rows; returns how many went. */
async function purgeInRounds(store: IdempotencyStore, now: number, maxRounds = 10): Promise<number> {
  let total = 0;
  for (let round = 0; round < maxRounds; round++) {
    const n = await store.purgeExpired(now);
    total += n;
    if (n < 1_000) break;
  }
  return total;
}

/**
 * Deletes idempotency keys whose 24 h are over: a replay after that is not
 * promised, and an expired row would otherwise live forever.
 */
export function purgeExpiredIdempotencyKeys(d1: D1Database, now: number): Promise<number> {
  return purgeInRounds(new IdempotencyRepo(d1), now);
}

/** Cron job (`* * * * *`, see jobs.ts). */
export async function purgeIdempotencyKeysJob(services: { idempotency: IdempotencyStore; clock: () => number }): Promise<void> {
  const count = await purgeInRounds(services.idempotency, services.clock());
  if (count > 0) log("info", "idempotency keys purged", { count });
}
