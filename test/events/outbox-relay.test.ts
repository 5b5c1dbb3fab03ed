import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import worker from "../../src/index";
import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
import { consumeDeadLetters, consumeEvents } from "../../src/events/consumer";
import { testApp } from "../support/secure-app";
import { insertOutboxStatement, type OutboxEvent } from "../../src/events/event.schemas";
import { relayOutbox } from "../../src/events/outbox.relay";
import { queueTransport, upstashKafkaTransport, type EventTransport } from "../../src/events/transport";
import { adminHeaders, api } from "../support/http";
import { eventually, sampleOrderEvent, sinkRecords } from "../support/events";

async function addToOutbox(...events: OutboxEvent[]) {
  await env.DB.batch(events.map((e) => insertOutboxStatement(env.DB, e, Date.now() - 1)));
}

async function statusOf(eventId: string) {
  return env.DB.prepare("SELECT status, attempts, last_error FROM outbox WHERE event_id = ?").bind(eventId).first<any>();
}

describe("outbox relay", () => {
  it("one outbox row -> one queue message -> one delivery at the platform, through the real queue", async () => {
    const e = sampleOrderEvent(`e2e-${crypto.randomUUID()}`);
    await addToOutbox(e);
    const result = await relayOutbox(env.DB, queueTransport(env.EVENTS_QUEUE), Date.now());
    expect(result.published).toBeGreaterThanOrEqual(1);
    expect((await statusOf(e.eventId)).status).toBe("PUBLISHED");
    const got = await eventually(async () => {
      const r = await sinkRecords(e.eventId);
      return r.length > 0 && r;
    });
    expect(got).toHaveLength(1);
    expect(got[0]!.body.order.orderId).toBe(e.event.type === "order.completed" ? e.event.order.orderId : -1);
  });

  it("publishes in id order and inserting the same event twice keeps one row", async () => {
    const seen: string[] = [];
    const recording: EventTransport = { name: "recording", publish: async (events) => void seen.push(...events.map((x) => x.eventId)) };
    const events = [1, 2, 3].map((i) => sampleOrderEvent(`order-${i}-${crypto.randomUUID()}`));
    await addToOutbox(...events);
    await addToOutbox(events[0]!);
    await relayOutbox(env.DB, recording, Date.now());
    expect(seen.filter((id) => events.some((e) => e.eventId === id))).toEqual(events.map((e) => e.eventId));
    expect(await env.DB.prepare("SELECT count(*) AS n FROM outbox WHERE event_id = ?").bind(events[0]!.eventId).first("n")).toBe(1);
  });

  it("nothing is lost while the transport is down: rows stay pending with backoff, then flow", async () => {
    let down = true;
    const published: string[] = [];
    const flaky: EventTransport = {
      name: "flaky",
      publish: async (events) => {
        if (down) throw new Error("transport unavailable");
        published.push(...events.map((e) => e.eventId));
      },
    };
    const events = [1, 2].map((i) => sampleOrderEvent(`down-${i}-${crypto.randomUUID()}`));
    await addToOutbox(...events);
    const t0 = Date.now();
    const r1 = await relayOutbox(env.DB, flaky, t0);
    expect(r1.published).toBe(0);
    for (const e of events)
      expect(await statusOf(e.eventId)).toMatchObject({ status: "PENDING", attempts: 1, last_error: "transport unavailable" });
    // Not due again before the backoff has passed.
    expect((await relayOutbox(env.DB, flaky, t0 + 500)).failed).toBe(0);
    const r2 = await relayOutbox(env.DB, flaky, t0 + 3_000);
    expect(r2.failed).toBeGreaterThan(0);
    down = false;
    await relayOutbox(env.DB, flaky, t0 + 60_000);
    expect(published.filter((id) => events.some((e) => e.eventId === id))).toEqual(events.map((e) => e.eventId));
    for (const e of events) expect((await statusOf(e.eventId)).status).toBe("PUBLISHED");
  });

  it("the Kafka adapter produces topic, key and value with basic auth to the REST endpoint", async () => {
    const e = sampleOrderEvent(`kafka-${crypto.randomUUID()}`, 424242);
    const kafka = upstashKafkaTransport({ url: `${env.TEST_SINK_URL}/kafka`, username: "user", password: "secret" });
    await kafka.publish([e]);
    const got = (await sinkRecords()).filter((r) => r.path === "/kafka/produce" && JSON.stringify(r.body).includes(e.eventId));
    expect(got).toHaveLength(1);
    expect(got[0]!.headers.authorization).toBe(`Basic ${btoa("user:secret")}`);
    expect(got[0]!.body).toEqual([{ topic: "order.completed", key: "424242", value: JSON.stringify(e.event) }]);
  });

  it("the every-minute cron relays pending rows", async () => {
    const e = sampleOrderEvent(`cron-${crypto.randomUUID()}`);
    await addToOutbox(e);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect((await statusOf(e.eventId)).status).toBe("PUBLISHED");
    await eventually(async () => (await sinkRecords(e.eventId)).length === 1);
  });
});

describe("dead letters", () => {
  /** One delivery attempt of `body` by the events consumer, as the queue would make it (attempt number given). */
  async function attempt(body: unknown, attempts: number) {
    const batch = createMessageBatch("edge-commerce-events", [{ id: `m${attempts}`, timestamp: new Date(), attempts, body }]);
    await consumeEvents(batch, { d1: env.DB, dataPlatformUrl: `${env.TEST_SINK_URL}/platform`, retryBaseSeconds: 0, now: Date.now });
    return getQueueResult(batch, createExecutionContext());
  }

  it("an event the platform always refuses is dead-lettered after the configured retries, then replayed by an admin", async () => {
    // Deterministic: each step the queue runtime would take is driven here (no polling of real deliveries);
    // the real queue path is covered by "one outbox row -> one queue message -> one delivery" above.
    const id = crypto.randomUUID();
    const e = sampleOrderEvent(`always500-${id}`);
    const relayed: unknown[] = [];
    await addToOutbox(e);
    await relayOutbox(
      env.DB,
      { name: "recording", publish: async (events) => void relayed.push(...events.map((x) => x.event)) },
      Date.now(),
    );
    const message = relayed.find((m) => (m as { eventId: string }).eventId === e.eventId)!;
    // max_retries = 5 in wrangler.toml: 6 attempts, each retried by the consumer ...
    for (let n = 1; n <= 6; n++) expect((await attempt(message, n)).retryMessages).toHaveLength(1);
    expect((await sinkRecords(e.eventId)).map((r) => r.status)).toEqual(Array(6).fill(500));
    // ... then the queue hands it to the dead-letter queue, whose consumer keeps it in D1.
    const dead = createMessageBatch("edge-commerce-events-dlq", [{ id: "dead", timestamp: new Date(), attempts: 6, body: message }]);
    await consumeDeadLetters(dead, { d1: env.DB, dataPlatformUrl: undefined, retryBaseSeconds: 0, now: Date.now });
    expect((await getQueueResult(dead, createExecutionContext())).explicitAcks).toEqual(["dead"]);
    const row = (await env.DB.prepare("SELECT id, attempts FROM dead_letters WHERE event_id = ?").bind(e.eventId).first<any>())!;
    expect(row.attempts).toBe(6);
    const list = await api.get("/api/v1/admin/dead-letters?limit=100", adminHeaders);
    expect(list.status).toBe(200);
    expect(list.body.data.deadLetters.find((d: any) => d.eventId === e.eventId)).toMatchObject({
      type: "order.completed",
      payload: e.event,
    });
    expect((await api.get("/api/v1/admin/dead-letters")).status).toBe(401);

    // The platform is fixed (here: the same order under a key it accepts) and the admin replays: the replay
    // sends the payload to the events queue (captured here, then consumed as the queue would).
    const fixed = { ...e.event, eventId: `replayed-${id}` };
    await env.DB.prepare("UPDATE dead_letters SET payload = ? WHERE id = ?").bind(JSON.stringify(fixed), row.id).run();
    const sent: unknown[] = [];
    const queue = { send: async (body: unknown) => void sent.push(body), sendBatch: async () => {} };
    const admin = testApp({ EVENTS_QUEUE: queue } as unknown as Record<string, string>);
    const replay = await admin.post(`/api/v1/admin/dead-letters/${row.id}/replay`, {}, adminHeaders);
    expect(replay.status).toBe(200);
    expect(replay.body.data.replayedAt).not.toBeNull();
    expect(sent).toEqual([fixed]);
    expect((await attempt(sent[0], 1)).explicitAcks).toHaveLength(1);
    expect((await sinkRecords(`replayed-${id}`)).map((r) => r.status)).toEqual([200]);
    expect((await api.post("/api/v1/admin/dead-letters/999999/replay", {}, adminHeaders)).status).toBe(404);
  });
});
