import { DomainEvent, type OrderCompletedV1 } from "./event.schemas";
import { deliverOrderCompleted } from "./data-platform.client";
import { errorFields, log } from "../shared/logger";
import { pooled } from "../shared/pool";

export interface ConsumerDeps {
  d1: D1Database;
  dataPlatformUrl: string | undefined;
  /** Base of the exponential retry delay in seconds (EVENT_RETRY_BASE_SECONDS; 0 retries at once). */
  retryBaseSeconds: number;
  now: () => number;
}

/**
 * Message retention both queues are created with by `npm run deploy:setup`
 * (`--message-retention-period-secs 1209600`): 14 days, the Queues maximum (the default is
 * 4 days; the free plan keeps 1 day, fixed). A message is deleted when its retention ends,
 * retries or not, so every retry schedule below must end before it, with a margin
 * (test/events/retry-schedule.test.ts checks wrangler.toml's max_retries against this).
 */
export const QUEUE_RETENTION_SECONDS = 14 * 86_400;
/** What a schedule leaves unused of the retention: batch waits, a consumer that was down or behind. */
export const RETENTION_MARGIN_SECONDS = 12 * 3_600;
/** The most a Queues retry may be delayed (`delaySeconds`). */
export const QUEUES_MAX_DELAY_SECONDS = 43_200;

/**
 * POSTs to the data platform in flight at once per batch (a batch is up to 50 events, wrangler.toml
 * `max_batch_size`): the runtime opens at most 6 connections per invocation anyway, and a POST's
 * 5 s timeout should not start while it waits for one.
 */
export const DELIVERY_CONCURRENCY = 6;

/** `max_retries` of the events queue's consumer in wrangler.toml. */
export const EVENT_MAX_RETRIES = 5;
/** The longest delay between two deliveries of an event. */
export const EVENT_MAX_DELAY_SECONDS = 60;

/** Delay before a failed delivery is retried: base x 2^(attempts-1), at most EVENT_MAX_DELAY_SECONDS. */
export function retryDelaySeconds(attempts: number, baseSeconds = 2): number {
  return Math.min(baseSeconds * 2 ** Math.max(attempts - 1, 0), EVENT_MAX_DELAY_SECONDS);
}

/**
 * Seconds from a message's first delivery to its last, when every try fails: the delays
 * before retries 1..maxRetries (`delayOf(attempts)`, attempts counting from 1).
 */
export function retryScheduleSeconds(maxRetries: number, delayOf: (attempts: number) => number): number {
  let total = 0;
  for (let attempts = 1; attempts <= maxRetries; attempts++) total += delayOf(attempts);
  return total;
}

/**
 * The events queue's consumer. Idempotent on the event id: an event already
 * delivered (a duplicate from an at-least-once relay) is acked without a second
 * POST. Failures are retried by the queue; after `max_retries` the queue moves
 * the message to the dead-letter queue.
 *
 * D1 sees two calls per batch, whatever its size (not two per message): one read of which
 * events were delivered before, one write of the ones delivered now. The consumer runs
 * beside the payment storm that produced its events, on the same D1 primary (issue 18).
 * Distinct events are POSTed DELIVERY_CONCURRENCY at a time; copies of one event in the batch share its POST.
 * A message is acked only once its delivery is recorded: when that write fails the whole
 * batch is retried, and the platform dedups the repeat by the Idempotency-Key it got.
 */
export async function consumeEvents(batch: MessageBatch<unknown>, deps: ConsumerDeps): Promise<void> {
  const copies = new Map<string, { event: OrderCompletedV1; messages: Message<unknown>[] }>();
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
    const entry = copies.get(event.eventId);
    if (entry) entry.messages.push(msg);
    else copies.set(event.eventId, { event, messages: [msg] });
  }
  if (copies.size === 0) return;

  const seen = await deps.d1
    .prepare("SELECT event_id AS eventId FROM event_deliveries WHERE event_id IN (SELECT value FROM json_each(?1))")
    .bind(JSON.stringify([...copies.keys()]))
    .all<{ eventId: string }>();
  for (const { eventId } of seen.results) {
    log("info", "duplicate event skipped", { eventId });
    for (const msg of copies.get(eventId)?.messages ?? []) msg.ack();
    copies.delete(eventId);
  }

  // deliverOrderCompleted never throws (a failure is an outcome), so every settled result is fulfilled.
  const entries = [...copies.values()];
  const settled = await pooled(entries, DELIVERY_CONCURRENCY, (entry) => deliverOrderCompleted(deps.dataPlatformUrl, entry.event));
  const outcomes = entries.map((entry, k) => {
    const r = settled[k]!;
    return { entry, outcome: r.status === "fulfilled" ? r.value : ({ ok: false, reason: String(r.reason) } as const) };
  });
  const delivered = outcomes.filter((o) => o.outcome.ok).map((o) => o.entry);
  if (delivered.length > 0) {
    await deps.d1
      .prepare(
        `INSERT OR IGNORE INTO event_deliveries (event_id, type, delivered_at)
         SELECT json_extract(value, '$.id'), json_extract(value, '$.type'), ?2 FROM json_each(?1)`,
      )
      .bind(JSON.stringify(delivered.map((e) => ({ id: e.event.eventId, type: e.event.type }))), deps.now())
      .run();
  }
  for (const { entry, outcome } of outcomes) {
    for (const msg of entry.messages) {
      if (outcome.ok) {
        msg.ack();
        continue;
      }
      log("warn", "data platform delivery failed; will retry", {
        eventId: entry.event.eventId,
        attempts: msg.attempts,
        reason: outcome.reason,
      });
      msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts, deps.retryBaseSeconds) });
    }
  }
}

/**
 * Whether a batch comes from a dead-letter queue (the Worker consumes both queues): `…-dlq`
 * at the top level, `…-dlq-<environment>` in [env.*] (wrangler.toml; test/events/retry-schedule.test.ts
 * checks every consumer there against it).
 */
export function isDeadLetterQueue(queue: string): boolean {
  return /-dlq(-[a-z0-9-]+)?$/.test(queue);
}

/** `max_retries` of the dead-letter queue's consumer in wrangler.toml (every environment). */
export const DEAD_LETTER_MAX_RETRIES = 36;
/** The longest delay between two tries of a dead letter (the Queues maximum). */
export const DEAD_LETTER_MAX_DELAY_SECONDS = QUEUES_MAX_DELAY_SECONDS;

/**
 * Delay before a dead letter whose D1 insert failed is offered again: 30 s doubling, at most
 * DEAD_LETTER_MAX_DELAY_SECONDS. With DEAD_LETTER_MAX_RETRIES that keeps a dead letter through
 * about 13.2 days of D1 refusals, inside QUEUE_RETENTION_SECONDS less its margin.
 * scripts/deploy-setup.mjs repeats this formula to check the same sum: keep them in step.
 */
export function deadLetterRetrySeconds(attempts: number): number {
  return Math.min(30 * 2 ** Math.max(attempts - 1, 0), DEAD_LETTER_MAX_DELAY_SECONDS);
}

/**
 * The dead-letter queue's consumer: keeps each dead message in D1 for inspection
 * and replay. Each message is acked only once its row is written; when D1 refuses,
 * the message is retried with a growing delay (deadLetterRetrySeconds, up to
 * DEAD_LETTER_MAX_RETRIES: a D1 outage of days still keeps the event, within the
 * queue's retention). The last try that fails logs the whole message, the operator's
 * last copy. The insert is idempotent on the event id (a row not yet replayed), so a
 * retry after a lost ack adds no second row.
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
      if (msg.attempts > DEAD_LETTER_MAX_RETRIES) {
        // The queue deletes it after this try: the log line is what is left of the event.
        log("error", "dead letter lost: not stored after every retry", {
          eventId,
          attempts: msg.attempts,
          payload: msg.body,
          ...errorFields(err),
        });
      } else {
        log("error", "dead letter not stored; retrying the message", { eventId, attempts: msg.attempts, ...errorFields(err) });
      }
      msg.retry({ delaySeconds: deadLetterRetrySeconds(msg.attempts) });
    }
  }
  if (kept.length > 0) log("error", "events dead-lettered", { count: kept.length, eventIds: kept });
}
