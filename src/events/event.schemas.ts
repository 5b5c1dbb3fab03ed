import { z } from "zod";

const isoString = z.string().min(1);

/** `order.completed` v1: everything the data platform needs about a paid order. */
export const OrderCompletedV1 = z.object({
  eventId: z.string().min(1),
  type: z.literal("order.completed"),
  version: z.literal(1),
  occurredAt: isoString,
  order: z.object({
    orderId: z.number().int().positive(),
    userId: z.number().int().positive(),
    userCouponId: z.number().int().positive().nullable(),
    items: z
      .array(
        z.object({
          productId: z.number().int().positive(),
          quantity: z.number().int().positive(),
          unitPrice: z.number().int().positive(),
          amount: z.number().int().nonnegative(),
        }),
      )
      .min(1),
    itemsAmount: z.number().int().nonnegative(),
    discountAmount: z.number().int().nonnegative(),
    totalAmount: z.number().int().nonnegative(),
    paidAt: isoString,
  }),
});
export type OrderCompletedV1 = z.infer<typeof OrderCompletedV1>;

/** `coupon.issued` v1: one first-come issuance. */
export const CouponIssuedV1 = z.object({
  eventId: z.string().min(1),
  type: z.literal("coupon.issued"),
  version: z.literal(1),
  occurredAt: isoString,
  issuance: z.object({
    couponId: z.number().int().positive(),
    userId: z.number().int().positive(),
    userCouponId: z.number().int().positive().nullable(),
    issuedAt: isoString,
    expiresAt: isoString,
  }),
});
export type CouponIssuedV1 = z.infer<typeof CouponIssuedV1>;

export const DomainEvent = z.discriminatedUnion("type", [OrderCompletedV1, CouponIssuedV1]);
export type DomainEvent = z.infer<typeof DomainEvent>;

/** What an outbox row carries: the event plus the key transports partition by. */
export interface OutboxEvent {
  eventId: string;
  type: DomainEvent["type"];
  /** Order id for order.completed, coupon id for coupon.issued (the Kafka message key). */
  aggregateId: string;
  event: DomainEvent;
}

export function orderCompletedEvent(order: OrderCompletedV1["order"], eventId: string = crypto.randomUUID()): OutboxEvent {
  const event = OrderCompletedV1.parse({ eventId, type: "order.completed", version: 1, occurredAt: order.paidAt, order });
  return { eventId, type: event.type, aggregateId: String(order.orderId), event };
}

/** Event id is deterministic per (coupon, user) so a retried issuance write never adds a second event. */
export function couponIssuedEvent(issuance: CouponIssuedV1["issuance"]): OutboxEvent {
  const eventId = `coupon.issued:${issuance.couponId}:${issuance.userId}`;
  const event = CouponIssuedV1.parse({ eventId, type: "coupon.issued", version: 1, occurredAt: issuance.issuedAt, issuance });
  return { eventId, type: event.type, aggregateId: String(issuance.couponId), event };
}

/**
 * The INSERT of an outbox row, to put in the same D1 batch as the state change
 * it announces. `INSERT OR IGNORE` on the unique event id keeps retries idempotent.
 */
export function insertOutboxStatement(d1: D1Database, e: OutboxEvent, at: number): D1PreparedStatement {
  return d1
    .prepare(
      `INSERT OR IGNORE INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
       VALUES (?1, ?2, ?3, ?4, 'PENDING', 0, ?5, ?5)`,
    )
    .bind(e.eventId, e.type, e.aggregateId, JSON.stringify(e.event), at);
}
