import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { purgeEventTables } from "../../src/events/retention.job";
import { JOBS } from "../../src/jobs";
import { createServices } from "../../src/services";

const DAY = 86_400_000;
const count = (sql: string, ...b: unknown[]) => env.DB.prepare(sql).bind(...b).first<number>("n");

async function seedRows(tag: string, now: number) {
  const old = now - 8 * DAY;
  const recent = now - DAY;
  const outbox = (id: string, status: string, publishedAt: number | null, at: number) =>
    env.DB.prepare(
      `INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
       VALUES (?1, 'order.completed', '1', '{}', ?2, 0, ?3, ?3, ?4)`,
    ).bind(`${tag}-${id}`, status, at, publishedAt);
  const delivery = (id: string, at: number) => env.DB.prepare("INSERT INTO event_deliveries (event_id, type, delivered_at) VALUES (?, 'order.completed', ?)").bind(`${tag}-${id}`, at);
  const dead = (id: string, replayedAt: number | null, at: number) =>
    env.DB.prepare("INSERT INTO dead_letters (event_id, type, payload, attempts, created_at, replayed_at) VALUES (?, 'order.completed', '{}', 6, ?, ?)").bind(`${tag}-${id}`, at, replayedAt);
  await env.DB.batch([
    outbox("old-published-1", "PUBLISHED", old, old),
    outbox("old-published-2", "PUBLISHED", old, old),
    outbox("old-published-3", "PUBLISHED", old, old),
    outbox("recent-published", "PUBLISHED", recent, recent),
    outbox("old-pending", "PENDING", null, old),
    delivery("old-1", old),
    delivery("old-2", old),
    delivery("old-3", old),
    delivery("recent", recent),
    dead("old-replayed-1", old, old),
    dead("old-replayed-2", old, old),
    dead("old-replayed-3", old, old),
    dead("recent-replayed", recent, old),
    dead("never-replayed", null, old),
  ]);
}

const left = async (tag: string) => ({
  outbox: (await env.DB.prepare("SELECT event_id AS id FROM outbox WHERE event_id LIKE ? ORDER BY id").bind(`${tag}-%`).all<{ id: string }>()).results.map((r) => r.id.slice(tag.length + 1)),
  deliveries: await count("SELECT count(*) AS n FROM event_deliveries WHERE event_id LIKE ?", `${tag}-%`),
  deadLetters: (await env.DB.prepare("SELECT event_id AS id FROM dead_letters WHERE event_id LIKE ? ORDER BY id").bind(`${tag}-%`).all<{ id: string }>()).results.map((r) => r.id.slice(tag.length + 1)),
});

describe("event-table retention", () => {
  it("the ten-minute cron purges published outbox rows, deliveries and replayed dead letters older than EVENT_RETENTION_DAYS, nothing else", async () => {
    const now = Date.now();
    await seedRows("ret", now);
    const job = JOBS["*/10 * * * *"]!.find((j) => j.name === "event-retention")!;
    expect(await job.run(createServices(env, loadConfig(env)), now)).toEqual({ outbox: 3, deliveries: 3, deadLetters: 3 });
    expect(await left("ret")).toEqual({
      outbox: ["old-pending", "recent-published"],
      deliveries: 1,
      deadLetters: ["never-replayed", "recent-replayed"],
    });
  });

  it("deletes in bounded batches: a backlog goes over several runs", async () => {
    const now = Date.now();
    await seedRows("bounded", now);
    const retention = loadConfig(env).eventRetentionMs;
    expect(await purgeEventTables(env.DB, now, retention, 2)).toEqual({ outbox: 2, deliveries: 2, deadLetters: 2 });
    expect(await purgeEventTables(env.DB, now, retention, 2)).toEqual({ outbox: 1, deliveries: 1, deadLetters: 1 });
    expect(await purgeEventTables(env.DB, now, retention, 2)).toEqual({ outbox: 0, deliveries: 0, deadLetters: 0 });
  });

  it("takes the retention from EVENT_RETENTION_DAYS (default 7, at least 1)", () => {
    expect(loadConfig({ ...env }).eventRetentionMs).toBe(7 * DAY);
    expect(loadConfig({ ...env, EVENT_RETENTION_DAYS: "30" } as never).eventRetentionMs).toBe(30 * DAY);
    expect(() => loadConfig({ ...env, EVENT_RETENTION_DAYS: "0" } as never)).toThrow();
  });
});
