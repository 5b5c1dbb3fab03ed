/**
 * Retention of the event tables, which otherwise grow with every payment:
 * published outbox rows, delivery records (the consumer's de-duplication) and
 * dead letters already replayed, each deleted once older than the retention
 * (EVENT_RETENTION_DAYS, at least 1: far longer than any queue redelivery, which
 * ends within minutes, so a delivery record is never dropped while a duplicate
 * can still arrive). Each run deletes at most RETENTION_BATCH rows per table, oldest
 * first in insertion order, so a backlog goes in bounded steps over several runs:
 * 3 D1 calls a run, whatever the backlog.
 */
export const RETENTION_BATCH = 500;

export interface RetentionReport {
  outbox: number;
  deliveries: number;
  deadLetters: number;
}

export async function purgeEventTables(d1: D1Database, now: number, retentionMs: number, limit = RETENTION_BATCH): Promise<RetentionReport> {
  const before = now - retentionMs;
  const [outbox, deliveries, deadLetters] = await d1.batch([
    d1
      .prepare(
        `DELETE FROM outbox WHERE id IN (
           SELECT id FROM outbox WHERE status = 'PUBLISHED' AND published_at < ?1 ORDER BY status, next_attempt_at, id LIMIT ?2)`,
      )
      .bind(before, limit),
    d1
      .prepare("DELETE FROM event_deliveries WHERE rowid IN (SELECT rowid FROM event_deliveries WHERE delivered_at < ?1 ORDER BY rowid LIMIT ?2)")
      .bind(before, limit),
    d1
      .prepare("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE replayed_at IS NOT NULL AND replayed_at < ?1 ORDER BY id LIMIT ?2)")
      .bind(before, limit),
  ]);
  return { outbox: outbox!.meta.changes, deliveries: deliveries!.meta.changes, deadLetters: deadLetters!.meta.changes };
}
