import type { OrderCompletedV1 } from "./event.schemas";
import { log } from "../shared/logger";

/** How long one delivery may take before it counts as failed (and the message is retried). */
export const DATA_PLATFORM_TIMEOUT_MS = 5_000;

export type DeliveryOutcome = { ok: true } | { ok: false; reason: string };

/**
 * Delivers one `order.completed` to the data platform: an HTTP POST of the
 * event JSON with the event id as `Idempotency-Key`. Any non-2xx, network
 * error or timeout is a failure to retry. With no URL configured it is a
 * logging sink (local default).
 */
export async function deliverOrderCompleted(url: string | undefined, event: OrderCompletedV1): Promise<DeliveryOutcome> {
  if (!url) {
    log("info", "data platform (logging sink): order.completed", {
      eventId: event.eventId,
      orderId: event.order.orderId,
      userId: event.order.userId,
      totalAmount: event.order.totalAmount,
      items: event.order.items.length,
    });
    return { ok: true };
  }
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": event.eventId },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(DATA_PLATFORM_TIMEOUT_MS),
    });
    await res.body?.cancel();
    return res.ok ? { ok: true } : { ok: false, reason: `HTTP ${res.status}` };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}
