import { DomainEvent } from "./event.schemas";
import { deliverOrderCompleted } from "./data-platform.client";
import { errorFields, log } from "../shared/logger";

export interface ConsumerDeps {
  d1: D1Database;
  dataPlatformUrl: string | undefined;
  /** Base of the exponential retry delay in seconds (EVENT_RETRY_BASE_SECONDS; 0 retries at once). */
  retryBaseSeconds: number;
  now: () => number;
}

/** Delay before a failed delivery is retried: base x 2^(attempts-1), at most 60 s. */
export function retryDelaySeconds(attempts: number, baseSeconds = 2): number {
  return Math.min(baseSeconds * 2 ** Math.max(attempts - 1, 0), 60);
}

/**
 * The events queue's consumer. Idempotent on the event id: an event already
 * delivered (a duplicate from an at-least-once relay) is acked without a second
 * POST. Failures are retried by the queue; after `max_retries` the queue moves
 * the message to the dead-letter queue.
 */
export async function consumeEvents(batch: MessageBatch<unknown>, deps: ConsumerDeps): Promise<void> {
  for (const msg of batch.messages) {
    const parsed = DomainEvent.safeParse(msg.body);
    if (!parsed.success) {
      // Retrying cannot fix a malformed message: log it and drop it.
      log("error", "dropping malformed event message", { messageId: msg.id, issues: parsed.error.issues.slice(0, 3) });
      msg.ack();
      continue;
    }
    const event = parsed.data;
    if (event.type !== "order.completed") {
      log("info", "event consumed", { type: event.type, eventId: event.eventId });
      msg.ack();
      continue;
    }
    const seen = await deps.d1.prepare("SELECT 1 AS hit FROM event_deliveries WHERE event_id = ?1").bind(event.eventId).first("hit");
    if (seen) {
      log("info", "duplicate event skipped", { eventId: event.eventId });
      msg.ack();
      continue;
    }
    const outcome = await deliverOrderCompleted(deps.dataPlatformUrl, event);
    if (outcome.ok) {
      await deps.d1
        .prepare("INSERT OR IGNORE INTO event_deliveries (event_id, type, delivered_at) VALUES (?1, ?2, ?3)")
        .bind(event.eventId, event.type, deps.now())
        .run();
      msg.ack();
    } else {
      log("warn", "data platform delivery failed; will retry", { eventId: event.eventId, attempts: msg.attempts, reason: outcome.reason });
      msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts, deps.retryBaseSeconds) });
    }
  }
}

/** Delay before a dead letter whose D1 insert failed is offered again: 30 s doubling, at most 12 h (the Queues maximum). */
export function deadLetterRetrySeconds(attempts: number): number {
  return Math.min(30 * 2 ** Math.max(attempts - 1, 0), 43_200);
}

/**
 * The dead-letter queue's consumer: keeps each dead message in D1 for inspection
 * and replay. Each message is acked only once its row is written; when D1 refuses,
 * the message is retried with a growing delay (wrangler.toml gives this queue
 * max_retries = 36: about 13 days of retries, inside the 14-day message retention
 * `npm run deploy:setup` gives the queue, so a D1 outage of days still keeps the event). The insert is
 * idempotent on the event id (a row not yet replayed), so a retry after a lost ack
 * adds no second row.
 */
export async function consumeDeadLetters(batch: MessageBatch<unknown>, deps: ConsumerDeps): Promise<void> {
  const kept: string[] = [];
  for (const msg of batch.messages) {
    const body = msg.body as { eventId?: unknown; type?: unknown } | null;
    const eventId = typeof body?.eventId === "string" ? body.eventId : `unknown:${msg.id}`;
    const type = typeof body?.type === "string" ? body.type : "unknown";
    try {
      await deps.d1
        .prepare(
          `INSERT INTO dead_letters (event_id, type, payload, attempts, created_at)
           SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_id = ?1 AND replayed_at IS NULL)`,
        )
        .bind(eventId, type, JSON.stringify(msg.body), msg.attempts, deps.now())
        .run();
      kept.push(eventId);
      msg.ack();
    } catch (err) {
      log("error", "dead letter not stored; retrying the message", { eventId, attempts: msg.attempts, ...errorFields(err) });
      msg.retry({ delaySeconds: deadLetterRetrySeconds(msg.attempts) });
    }
  }
  if (kept.length > 0) log("error", "events dead-lettered", { count: kept.length, eventIds: kept });
}
