import type { OutboxEvent, DomainEvent } from "./event.schemas";
import type { EventTransport } from "./transport";
import { errorFields, log } from "../shared/logger";

export interface RelayOptions {
  /** Rows per batch and batches per run: bounded work per invocation. */
  batchSize?: number;
  maxBatches?: number;
  /** A claimed row is invisible to other relays this long (crash between publish and mark -> republished after it). */
  leaseMs?: number;
}

export interface RelayResult {
  published: number;
  failed: number;
}

/** Retry delay after `attempts` failed publishes: 2 s, 4 s, ... capped at 5 min. */
export function relayBackoffMs(attempts: number): number {
  return Math.min(2 ** Math.max(attempts, 1) * 1000, 300_000);
}

interface ClaimedRow {
  id: number;
  event_id: string;
  type: DomainEvent["type"];
  aggregate_id: string;
  payload: string;
  attempts: number;
}

/**
 * Publishes due PENDING outbox rows in id order (at least once). Each batch is
 * claimed with one UPDATE ... RETURNING (D1 serializes writes, so two relays
 * never claim the same row), published, then marked PUBLISHED; on failure the
 * rows stay PENDING with a backoff. Runs right after a commit (waitUntil) and
 * from the cron.
 */
export async function relayOutbox(d1: D1Database, transport: EventTransport, now: number, opts: RelayOptions = {}): Promise<RelayResult> {
  const batchSize = opts.batchSize ?? 50;
  const maxBatches = opts.maxBatches ?? 10;
  const leaseMs = opts.leaseMs ?? 30_000;
  const result: RelayResult = { published: 0, failed: 0 };
  for (let i = 0; i < maxBatches; i++) {
    const claimed = await d1
      .prepare(
        `UPDATE outbox SET next_attempt_at = ?1, attempts = attempts + 1
         WHERE id IN (SELECT id FROM outbox WHERE status = 'PENDING' AND next_attempt_at <= ?2 ORDER BY id LIMIT ?3)
         RETURNING id, event_id, type, aggregate_id, payload, attempts`,
      )
      .bind(now + leaseMs, now, batchSize)
      .all<ClaimedRow>();
    const rows = claimed.results.sort((a, b) => a.id - b.id);
    if (rows.length === 0) break;
    const ids = rows.map((r) => r.id);
    const placeholders = ids.map((_, j) => `?${j + 2}`).join(",");
    const events: OutboxEvent[] = rows.map((r) => ({
      eventId: r.event_id,
      type: r.type,
      aggregateId: r.aggregate_id,
      event: JSON.parse(r.payload) as DomainEvent,
    }));
    try {
      await transport.publish(events);
    } catch (err) {
      const attempts = Math.max(...rows.map((r) => r.attempts));
      await d1
        .prepare(`UPDATE outbox SET next_attempt_at = ?1, last_error = ?${ids.length + 2} WHERE id IN (${placeholders})`)
        .bind(now + relayBackoffMs(attempts), ...ids, String(err instanceof Error ? err.message : err).slice(0, 500))
        .run();
      log("warn", "outbox publish failed; rows stay pending", {
        transport: transport.name,
        rows: ids.length,
        attempts,
        ...errorFields(err),
        stack: undefined,
      });
      result.failed += rows.length;
      break;
    }
    await d1
      .prepare(`UPDATE outbox SET status = 'PUBLISHED', published_at = ?1, last_error = NULL WHERE id IN (${placeholders})`)
      .bind(now, ...ids)
      .run();
    result.published += rows.length;
    if (rows.length < batchSize) break;
  }
  if (result.published > 0) log("info", "outbox relayed", { transport: transport.name, ...result });
  return result;
}
