import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { purgeEventTables, RETENTION_BATCH } from "../../src/events/retention.job";
import { SubrequestBudget } from "../../src/shared/budget";
import { seedSettledHistory } from "../support/settled-history";
import { runJob } from "../support/jobs";
import { historyWalks, planOf, statementsOf } from "../support/plans";

const DAY = 86_400_000;
const count = (sql: string, ...b: unknown[]) =>
  env.DB.prepare(sql)
    .bind(...b)
    .first<number>("n");

async function seedRows(tag: string, now: number) {
  const old = now - 8 * DAY;
  const recent = now - DAY;
  const outbox = (id: string, status: string, publishedAt: number | null, at: number) =>
    env.DB.prepare(
      `INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
       VALUES (?1, 'order.completed', '1', '{}', ?2, 0, ?3, ?3, ?4)`,
    ).bind(`${tag}-${id}`, status, at, publishedAt);
  const delivery = (id: string, at: number) =>
    env.DB.prepare("INSERT INTO event_deliveries (event_id, type, delivered_at) VALUES (?, 'order.completed', ?)").bind(`${tag}-${id}`, at);
  const dead = (id: string, replayedAt: number | null, at: number) =>
    env.DB.prepare(
      "INSERT INTO dead_letters (event_id, type, payload, attempts, created_at, replayed_at) VALUES (?, 'order.completed', '{}', 6, ?, ?)",
    ).bind(`${tag}-${id}`, at, replayedAt);
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
  outbox: (
    await env.DB.prepare("SELECT event_id AS id FROM outbox WHERE event_id LIKE ? ORDER BY id").bind(`${tag}-%`).all<{ id: string }>()
  ).results.map((r) => r.id.slice(tag.length + 1)),
  deliveries: await count("SELECT count(*) AS n FROM event_deliveries WHERE event_id LIKE ?", `${tag}-%`),
  deadLetters: (
    await env.DB.prepare("SELECT event_id AS id FROM dead_letters WHERE event_id LIKE ? ORDER BY id").bind(`${tag}-%`).all<{ id: string }>()
  ).results.map((r) => r.id.slice(tag.length + 1)),
});

const retentionMs = loadConfig(env).eventRetentionMs;

/** `n` rows past the retention in each table (one INSERT ... SELECT per table). */
async function seedBacklog(tag: string, n: number, at: number) {
  const seq = "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)";
  await env.DB.batch([
    env.DB.prepare(
      `INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at)
       ${seq} SELECT ?2 || '-' || x, 'order.completed', x, '{}', 'PUBLISHED', 1, ?3, ?3, ?3 FROM seq`,
    ).bind(n, tag, at),
    env.DB.prepare(
      `INSERT INTO event_deliveries (event_id, type, delivered_at) ${seq} SELECT ?2 || '-' || x, 'order.completed', ?3 FROM seq`,
    ).bind(n, tag, at),
    env.DB.prepare(
      `INSERT INTO dead_letters (event_id, type, payload, attempts, created_at, replayed_at) ${seq} SELECT ?2 || '-' || x, 'order.completed', '{}', 6, ?3, ?3 FROM seq`,
    ).bind(n, tag, at),
  ]);
}

describe("event-table retention", () => {
  it("the ten-minute cron purges published outbox rows, deliveries and replayed dead letters older than EVENT_RETENTION_DAYS, nothing else", async () => {
    const now = Date.now();
    await seedRows("ret", now);
    expect((await runJob("*/10 * * * *", "event-retention", now)).result).toEqual({
      outbox: 3,
      deliveries: 3,
      deadLetters: 3,
      rounds: 1,
      stoppedOn: null,
    });
    expect(await left("ret")).toEqual({
      outbox: ["old-pending", "recent-published"],
      deliveries: 1,
      deadLetters: ["never-replayed", "recent-replayed"],
    });
  });

  it("deletes in bounded batches: a run that spends its subrequest budget says so, and the next run goes on", async () => {
    const now = Date.now();
    await seedRows("bounded", now);
    const run = () => purgeEventTables({ d1: env.DB, now, retentionMs, batchSize: 2, budget: new SubrequestBudget(1) });
    expect(await run()).toEqual({ outbox: 2, deliveries: 2, deadLetters: 2, rounds: 1, stoppedOn: "subrequests" });
    expect(await run()).toEqual({ outbox: 1, deliveries: 1, deadLetters: 1, rounds: 1, stoppedOn: null });
    expect(await run()).toEqual({ outbox: 0, deliveries: 0, deadLetters: 0, rounds: 1, stoppedOn: null });
  });

  it("keeps deleting while a round finds a full batch: a backlog of 2.5 batches goes in one run of three rounds", async () => {
    const now = Date.now();
    const n = RETENTION_BATCH * 2.5;
    await seedBacklog("backlog", n, now - 8 * DAY);
    expect((await runJob("*/10 * * * *", "event-retention", now)).result).toEqual({
      outbox: n,
      deliveries: n,
      deadLetters: n,
      rounds: 3,
      stoppedOn: null,
    });
    expect((await left("backlog")).deliveries).toBe(0);
  });

  it("starts no round past its time budget, and says so", async () => {
    const now = Date.now();
    await seedRows("timed", now);
    let t = 0;
    const clock = () => (t += 1_000); // every look at the clock is a second later
    const report = await purgeEventTables({ d1: env.DB, now, retentionMs, batchSize: 1, timeBudgetMs: 2_500, clock });
    // Deadline 1,000 + 2,500: rounds start at 2,000 and 3,000; at 4,000 the run stops with work left.
    expect(report).toEqual({ outbox: 2, deliveries: 2, deadLetters: 2, rounds: 2, stoppedOn: "time" });
    await purgeEventTables({ d1: env.DB, now, retentionMs });
  });

  it("reads the rows it deletes, not the tables: 5,000 more events inside the retention change nothing", async () => {
    const now = Date.now();
    await seedRows("lean-a", now);
    const before = await runJob("*/10 * * * *", "event-retention", now);
    await seedSettledHistory({ n: 5_000, tag: "lean-history", now });
    await seedRows("lean-b", now);
    const after = await runJob("*/10 * * * *", "event-retention", now);
    expect(after.result).toEqual(before.result);
    expect(before.result).toMatchObject({ outbox: 3, deliveries: 3, deadLetters: 3 });
    expect(Math.abs(after.d1.rowsRead - before.d1.rowsRead)).toBeLessThanOrEqual(3);
    expect(after.d1.rowsRead).toBeLessThan(50);
    // Nothing due: a handful of rows, whatever the tables hold.
    expect((await runJob("*/10 * * * *", "event-retention", now)).d1.rowsRead).toBeLessThan(10);
  });

  it("finds each table's due rows through an index range, never a walk of the table", async () => {
    const statements = await statementsOf(() => runJob("*/10 * * * *", "event-retention"));
    expect(statements).toHaveLength(3);
    const plans = await Promise.all(statements.map(planOf));
    for (const plan of plans) expect(historyWalks(plan)).toEqual([]);
    expect(plans.join("\n")).toMatch(/SEARCH outbox USING INDEX outbox_status_next_idx \(status=\? AND next_attempt_at<\?\)/);
    expect(plans.join("\n")).toMatch(/SEARCH event_deliveries USING COVERING INDEX event_deliveries_delivered_at_idx \(delivered_at<\?\)/);
    expect(plans.join("\n")).toMatch(
      /SEARCH dead_letters USING COVERING INDEX dead_letters_replayed_at_idx \(replayed_at>\? AND replayed_at<\?\)/,
    );
  });

  it("takes the retention from EVENT_RETENTION_DAYS (default 7, at least 1)", () => {
    expect(loadConfig({ ...env }).eventRetentionMs).toBe(7 * DAY);
    expect(loadConfig({ ...env, EVENT_RETENTION_DAYS: "30" } as never).eventRetentionMs).toBe(30 * DAY);
    expect(() => loadConfig({ ...env, EVENT_RETENTION_DAYS: "0" } as never)).toThrow();
  });
});
