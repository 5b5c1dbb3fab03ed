import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { consumeDeadLetters, consumeEvents, DEAD_LETTER_MAX_RETRIES, retryDelaySeconds } from "../../src/events/consumer";
import { sampleOrderEvent, sinkRecords } from "../support/events";
import { HopMeter, meterD1 } from "../../src/shared/hops";

const deps = () => ({ d1: env.DB, dataPlatformUrl: `${env.TEST_SINK_URL}/platform`, retryBaseSeconds: 2, now: Date.now });

async function deliver(body: unknown, attempts = 1, id = crypto.randomUUID()) {
  const batch = createMessageBatch("edge-commerce-events", [{ id, timestamp: new Date(), attempts, body }]);
  const ctx = createExecutionContext();
  await consumeEvents(batch, deps());
  return getQueueResult(batch, ctx);
}

describe("events consumer -> data platform", () => {
  it("POSTs order.completed with the event id as Idempotency-Key and acks", async () => {
    const e = sampleOrderEvent(`ok-${crypto.randomUUID()}`);
    const result = await deliver(e.event);
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toHaveLength(0);
    const got = await sinkRecords(e.eventId);
    expect(got).toHaveLength(1);
    expect(got[0]!.status).toBe(200);
    expect(got[0]!.headers["content-type"]).toBe("application/json");
    expect(got[0]!.body).toEqual(e.event);
  });

  it("a duplicate message (relay crash between publish and mark) is delivered once", async () => {
    const e = sampleOrderEvent(`dup-${crypto.randomUUID()}`);
    const batch = createMessageBatch("edge-commerce-events", [
      { id: "m1", timestamp: new Date(), attempts: 1, body: e.event },
      { id: "m2", timestamp: new Date(), attempts: 1, body: e.event },
    ]);
    const ctx = createExecutionContext();
    await consumeEvents(batch, deps());
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks.sort()).toEqual(["m1", "m2"]);
    await deliver(e.event); // and once more, later
    expect(await sinkRecords(e.eventId)).toHaveLength(1);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM event_deliveries WHERE event_id = ?").bind(e.eventId).first("n")).toBe(1);
  });

  it("platform answers 500 twice then 200: retried with backoff, delivered once", async () => {
    const e = sampleOrderEvent(`fail2-${crypto.randomUUID()}`);
    const first = await deliver(e.event, 1);
    // (the delay itself, 2 s then 4 s, is pinned by the backoff test below; getQueueResult does not report it)
    expect(first.retryMessages).toHaveLength(1);
    expect(first.explicitAcks).toHaveLength(0);
    const second = await deliver(e.event, 2);
    expect(second.retryMessages).toHaveLength(1);
    const third = await deliver(e.event, 3);
    expect(third.explicitAcks).toHaveLength(1);
    const got = await sinkRecords(e.eventId);
    expect(got.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM event_deliveries WHERE event_id = ?").bind(e.eventId).first("n")).toBe(1);
  });

  it("a batch costs D1 two calls whatever its size (one read of earlier deliveries, one write of the new ones)", async () => {
    const earlier = sampleOrderEvent(`batch-earlier-${crypto.randomUUID()}`);
    await deliver(earlier.event);
    const fresh = Array.from({ length: 8 }, (_, i) => sampleOrderEvent(`batch-${i}-${crypto.randomUUID()}`));
    const messages = [earlier, ...fresh, fresh[0]!].map((e, i) => ({ id: `b${i}`, timestamp: new Date(), attempts: 1, body: e.event }));
    const batch = createMessageBatch("edge-commerce-events", messages);
    const ctx = createExecutionContext();
    const meter = new HopMeter();
    await consumeEvents(batch, { ...deps(), d1: meterD1(env.DB, meter) });
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks.sort()).toEqual(messages.map((m) => m.id).sort());
    expect(meter.d1Cost()).toMatchObject({ calls: 2, writeTx: 1 });
    // The one delivered before is not POSTed again; the copy of fresh[0] shares its POST.
    expect(await sinkRecords(earlier.eventId)).toHaveLength(1);
    for (const e of fresh) expect(await sinkRecords(e.eventId)).toHaveLength(1);
    const ids = JSON.stringify([earlier, ...fresh].map((e) => e.eventId));
    expect(
      await env.DB.prepare("SELECT count(*) AS n FROM event_deliveries WHERE event_id IN (SELECT value FROM json_each(?))")
        .bind(ids)
        .first("n"),
    ).toBe(9);
  });

  it("in one batch, a failed delivery is retried while the others are acked and recorded", async () => {
    const ok = sampleOrderEvent(`mixed-ok-${crypto.randomUUID()}`);
    const failing = sampleOrderEvent(`always500-${crypto.randomUUID()}`);
    const batch = createMessageBatch("edge-commerce-events", [
      { id: "ok", timestamp: new Date(), attempts: 1, body: ok.event },
      { id: "bad", timestamp: new Date(), attempts: 1, body: failing.event },
    ]);
    const ctx = createExecutionContext();
    await consumeEvents(batch, deps());
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["ok"]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["bad"]);
    const delivered = await env.DB.prepare("SELECT event_id FROM event_deliveries WHERE event_id IN (?, ?)")
      .bind(ok.eventId, failing.eventId)
      .all<{ event_id: string }>();
    expect(delivered.results.map((r) => r.event_id)).toEqual([ok.eventId]);
  });

  it("acks and drops a malformed message instead of retrying it forever", async () => {
    const result = await deliver({ type: "order.completed", eventId: "x" });
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toHaveLength(0);
  });

  it("the dead-letter consumer keeps each message in D1", async () => {
    const e = sampleOrderEvent(`dead-${crypto.randomUUID()}`);
    const batch = createMessageBatch("edge-commerce-events-dlq", [{ id: "d1", timestamp: new Date(), attempts: 6, body: e.event }]);
    const ctx = createExecutionContext();
    await consumeDeadLetters(batch, deps());
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["d1"]);
    const row = await env.DB.prepare("SELECT event_id, type, attempts, payload FROM dead_letters WHERE event_id = ?")
      .bind(e.eventId)
      .first<any>();
    expect(row).toMatchObject({ event_id: e.eventId, type: "order.completed", attempts: 6 });
    expect(JSON.parse(row.payload)).toEqual(e.event);
  });

  it("never drops a dead letter whose D1 insert fails: the message is retried, stored once when D1 is back", async () => {
    const e = sampleOrderEvent(`dead-retry-${crypto.randomUUID()}`);
    const other = sampleOrderEvent(`dead-ok-${crypto.randomUUID()}`);
    const msgs = [
      { id: "x1", timestamp: new Date(), attempts: 6, body: e.event },
      { id: "x2", timestamp: new Date(), attempts: 6, body: other.event },
    ];
    // D1 refuses the first message's insert only.
    const flaky = new Proxy(env.DB, {
      get(target, prop) {
        if (prop !== "prepare") return (target as any)[prop].bind(target);
        return (sql: string) => {
          const stmt = target.prepare(sql);
          return {
            bind: (...a: unknown[]) =>
              a[0] === e.eventId ? { run: () => Promise.reject(new Error("D1_ERROR: overloaded")) } : stmt.bind(...a),
          };
        };
      },
    });
    const batch = createMessageBatch("edge-commerce-events-dlq", msgs);
    const ctx = createExecutionContext();
    await consumeDeadLetters(batch, { ...deps(), d1: flaky as D1Database });
    const result = await getQueueResult(batch, ctx);
    expect(result.ackAll).toBe(false);
    expect(result.explicitAcks).toEqual(["x2"]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["x1"]);
    const rows = (id: string) => env.DB.prepare("SELECT count(*) AS n FROM dead_letters WHERE event_id = ?").bind(id).first("n");
    expect(await rows(e.eventId)).toBe(0);
    // Redelivered (twice: a lost ack) once D1 is back: one row.
    for (let i = 0; i < 2; i++) {
      const again = createMessageBatch("edge-commerce-events-dlq", [{ ...msgs[0]!, attempts: 7 + i }]);
      await consumeDeadLetters(again, deps());
      expect((await getQueueResult(again, createExecutionContext())).explicitAcks).toEqual(["x1"]);
    }
    expect(await rows(e.eventId)).toBe(1);
    expect(await rows(other.eventId)).toBe(1);
  });

  it("the dead letter's last try that D1 refuses logs the whole message (the queue deletes it after that try)", async () => {
    const e = sampleOrderEvent(`dead-last-${crypto.randomUUID()}`);
    const refusing = {
      prepare: () => ({ bind: () => ({ run: () => Promise.reject(new Error("D1_ERROR: overloaded")) }) }),
    } as unknown as D1Database;
    const lines: { msg: string; payload?: unknown }[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((line: unknown) => void lines.push(JSON.parse(String(line))));
    for (const attempts of [DEAD_LETTER_MAX_RETRIES, DEAD_LETTER_MAX_RETRIES + 1]) {
      const batch = createMessageBatch("edge-commerce-events-dlq", [
        { id: `last-${attempts}`, timestamp: new Date(), attempts, body: e.event },
      ]);
      await consumeDeadLetters(batch, { ...deps(), d1: refusing });
      expect((await getQueueResult(batch, createExecutionContext())).retryMessages).toHaveLength(1);
    }
    spy.mockRestore();
    expect(lines.map((l) => l.msg)).toEqual([
      "dead letter not stored; retrying the message",
      "dead letter lost: not stored after every retry",
    ]);
    expect(lines[1]!.payload).toEqual(e.event);
  });

  it("backs off exponentially up to a minute", () => {
    expect([1, 2, 3, 6, 7, 20].map((a) => retryDelaySeconds(a, 2))).toEqual([2, 4, 8, 60, 60, 60]);
    expect(retryDelaySeconds(5, 0)).toBe(0);
  });
});
