import { env } from "cloudflare:workers";
import { orderCompletedEvent, type OutboxEvent } from "../../src/events/event.schemas";

export interface SinkRecord {
  path: string;
  headers: Record<string, string>;
  body: any;
  status: number;
}

/** What the recording sink (data platform / Kafka stand-in) received, optionally for one Idempotency-Key. */
export async function sinkRecords(key?: string): Promise<SinkRecord[]> {
  const res = await fetch(`${env.TEST_SINK_URL}/records${key ? `?key=${encodeURIComponent(key)}` : ""}`);
  return (await res.json()) as SinkRecord[];
}

/**
 * Waits until `check` holds, polling a condition that the queue consumer (which
 * runs asynchronously in Miniflare) will make true; fails after `timeoutMs`.
 */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

let seq = 0;
/** A valid order.completed event with a chosen event id (the sink's behaviour keys on its prefix). */
export function sampleOrderEvent(eventId: string, orderId = 100_000 + ++seq): OutboxEvent {
  return orderCompletedEvent(
    {
      orderId,
      userId: 1,
      userCouponId: null,
      items: [{ productId: 1, quantity: 2, unitPrice: 1000, amount: 2000 }],
      itemsAmount: 2000,
      discountAmount: 0,
      totalAmount: 2000,
      paidAt: new Date().toISOString(),
    },
    eventId,
  );
}
