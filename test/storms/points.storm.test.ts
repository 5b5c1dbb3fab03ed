import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createUser } from "../support/http";

async function historyOf(userId: number) {
  const rows = await env.DB.prepare("SELECT type, amount, balance_after FROM point_history WHERE user_id = ? ORDER BY id")
    .bind(userId)
    .all<{ type: string; amount: number; balance_after: number }>();
  return rows.results;
}

describe("charge storms", () => {
  it("50 parallel charges of 1,000 on one user end at exactly +50,000 with 50 history rows", async () => {
    const userId = await createUser(0);
    const results = await Promise.all(Array.from({ length: 50 }, () => api.post("/api/v1/points/charge", { userId, amount: 1_000 })));
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect((await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance).toBe(50_000);
    const history = await historyOf(userId);
    expect(history).toHaveLength(50);
    // Each history row records a distinct running balance: no update was lost or applied twice.
    expect(history.map((h) => h.balance_after).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => (i + 1) * 1_000));
    // The balances reported to callers are exactly the running balances.
    expect(results.map((r) => r.body.data.balance).sort((a: number, b: number) => a - b)).toEqual(
      history.map((h) => h.balance_after).sort((a, b) => a - b),
    );
  });

  it("parallel charges that cross 5,000,000 never leave the balance above it", async () => {
    const userId = await createUser(4_000_000);
    const results = await Promise.all(Array.from({ length: 30 }, () => api.post("/api/v1/points/charge", { userId, amount: 70_000 })));
    const okCount = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status === 409 && r.body.error === "BALANCE_LIMIT_EXCEEDED").length;
    expect(okCount + refused).toBe(30);
    // 1,000,000 of headroom fits exactly 14 charges of 70,000.
    expect(okCount).toBe(14);
    const balance = (await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance;
    expect(balance).toBe(4_000_000 + okCount * 70_000);
    expect(balance).toBeLessThanOrEqual(5_000_000);
    const history = await historyOf(userId);
    expect(history).toHaveLength(1 + okCount);
    expect(history.reduce((s, h) => s + h.amount, 0)).toBe(balance);
    expect(Math.max(...history.map((h) => h.balance_after))).toBe(balance);
  });
});
