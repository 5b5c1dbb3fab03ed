import type { OutboxEvent } from "./event.schemas";

/**
 * The event port: publishes a batch of outbox events, in order, or throws.
 * The relay marks rows published only after `publish` resolved.
 */
export interface EventTransport {
  readonly name: string;
  publish(events: OutboxEvent[]): Promise<void>;
}

/** Cloudflare Queues take at most 100 messages per sendBatch. */
const QUEUE_BATCH_LIMIT = 100;

/** Default transport: a Cloudflare Queue (retries and a dead-letter queue come with it). */
export function queueTransport(queue: Queue): EventTransport {
  return {
    name: "queue",
    async publish(events) {
      for (let i = 0; i < events.length; i += QUEUE_BATCH_LIMIT) {
        await queue.sendBatch(events.slice(i, i + QUEUE_BATCH_LIMIT).map((e) => ({ body: e.event, contentType: "json" as const })));
      }
    },
  };
}

export interface KafkaSettings {
  url: string;
  username: string;
  password: string;
}

/**
 * Adapter for a Kafka REST endpoint speaking Upstash's API (`POST {url}/produce`,
 * basic auth): topic = event type, key = aggregate id, value = the event JSON.
 * Upstash discontinued its Kafka service in 2024; this stays for compatible endpoints.
 * `@upstash/kafka` is imported on the first publish, so a deployment without Kafka
 * settings (the default: the queue) never loads it.
 */
export function upstashKafkaTransport(settings: KafkaSettings): EventTransport {
  let producer: Promise<{ produceMany: (requests: { topic: string; key: string; value: string }[]) => Promise<unknown> }> | undefined;
  return {
    name: "upstash-kafka",
    async publish(events) {
      if (events.length === 0) return;
      producer ??= import("@upstash/kafka").then(({ Kafka }) => new Kafka(settings).producer());
      // A failed import is not kept: the next publish tries again.
      const loaded = await producer.catch((err) => {
        producer = undefined;
        throw err;
      });
      await loaded.produceMany(events.map((e) => ({ topic: e.type, key: e.aggregateId, value: JSON.stringify(e.event) })));
    },
  };
}
