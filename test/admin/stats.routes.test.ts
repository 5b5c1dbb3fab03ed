import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { BacklogRepo } from "../../src/admin/backlog.repo";
import { HopMeter, meterD1 } from "../../src/shared/hops";
import { statementsOf, planOf } from "../support/plans";
import { adminHeaders, api, errorCode } from "../support/http";

/** Storage is per file and shared by the tests below: each counts the change it makes. */
async function stats() {
  const res = await api.get("/api/v1/admin/stats", adminHeaders);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data as { outboxPending: number; deadLettersWaiting: number; countCap: number };
}

async function insertDeadLetter(replayedAt: number | null = null): Promise<number> {
  const row = await env.DB.prepare(
    "INSERT INTO dead_letters (event_id, type, payload, attempts, created_at, replayed_at) VALUES (?, 'order.completed', '{}', 5, ?, ?) RETURNING id",
  )
    .bind(crypto.randomUUID(), Date.now(), replayedAt)
    .first<{ id: number }>();
  return row!.id;
}

async function insertOutbox(status: "PENDING" | "PUBLISHED"): Promise<void> {
  await env.DB.prepare(
    "INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at, published_at) VALUES (?1, 'order.completed', '1', '{}', ?2, 0, ?3, ?3, ?4)",
  )
    .bind(crypto.randomUUID(), status, Date.now() + 3_600_000, status === "PUBLISHED" ? Date.now() : null)
    .run();
}

describe("GET /api/v1/admin/stats", () => {
  it("counts pending outbox rows and unreplayed dead letters, not the published or replayed history", async () => {
    const before = await stats();
    await insertOutbox("PENDING");
    await insertOutbox("PENDING");
    await insertOutbox("PUBLISHED");
    const letters = [await insertDeadLetter(), await insertDeadLetter(), await insertDeadLetter()];
    await insertDeadLetter(Date.now());
    expect(await stats()).toEqual({
      outboxPending: before.outboxPending + 2,
      deadLettersWaiting: before.deadLettersWaiting + 3,
      countCap: 10_000,
    });

    // A replay through the admin route takes the letter out of the waiting count at once.
    expect((await api.post(`/api/v1/admin/dead-letters/${letters[0]}/replay`, {}, adminHeaders)).status).toBe(200);
    expect((await stats()).deadLettersWaiting).toBe(before.deadLettersWaiting + 2);
  });

  it("stops counting at the cap (reads at most cap index entries)", async () => {
    const repo = new BacklogRepo(env.DB);
    for (let i = 0; i < 4; i++) await insertDeadLetter();
    const { deadLettersWaiting } = await repo.read(3);
    expect(deadLettersWaiting).toBe(3);
  });

  it("reads ranges of the PENDING index prefix and of the partial waiting-letters index: no walk of either history", async () => {
    const statements = await statementsOf(() => new BacklogRepo(meterD1(env.DB, new HopMeter())).read());
    expect(statements).toHaveLength(2);
    const plans = await Promise.all(statements.map(planOf));
    for (const plan of plans) expect(plan).not.toMatch(/SCAN (outbox|dead_letters)\b/);
    // PENDING rows are the backlog itself (publishing moves a row out of the prefix), and the LIMIT caps it.
    expect(plans.join("\n")).toContain("SEARCH outbox USING COVERING INDEX outbox_status_next_idx (status=?)");
    expect(plans.join("\n")).toContain("SEARCH dead_letters USING INDEX dead_letters_waiting_idx (id>?)");
  });

  it("is an admin route: 401 without the token, 403 with a wrong one", async () => {
    const none = await api.get("/api/v1/admin/stats");
    expect([none.status, errorCode(none)]).toEqual([401, "UNAUTHORIZED"]);
    const wrong = await api.get("/api/v1/admin/stats", { authorization: "Bearer nope" });
    expect([wrong.status, errorCode(wrong)]).toEqual([403, "FORBIDDEN"]);
  });
});
