import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

/** Query plans are deterministic costs: pinned here, not timed. */
const plan = async (sql: string, ...binds: unknown[]) =>
  (await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`).bind(...binds).all<{ detail: string }>()).results.map((r) => r.detail);

describe("query plans of the order sweeps", () => {
  it("reads unsettled orders through the partial index orders_unsettled_idx, never the closed history", async () => {
    // The sweep's own statement (src/orders/order-sweep.repo.ts listUnsettled), inner pick.
    const steps = await plan(
      `SELECT id, status, user_id, user_coupon_id FROM orders INDEXED BY orders_unsettled_idx
       WHERE status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND closed_at IS NULL AND settle_after <= ?1 AND updated_at < ?2
       ORDER BY settle_after, id LIMIT ?3`,
      0,
      0,
      10,
    );
    expect(steps.join(" | ")).toMatch(/SEARCH orders USING INDEX orders_unsettled_idx \(settle_after<\?\)/);
    expect(steps.join(" | ")).not.toMatch(/SCAN orders|TEMP B-TREE/);
  });

  it("picks expirable orders by the (status, expires_at) index", async () => {
    const steps = await plan("SELECT id FROM orders WHERE status = 'NOT_PAID' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2", 0, 10);
    expect(steps.join(" | ")).toMatch(/SEARCH orders USING (COVERING )?INDEX orders_status_expires_idx \(status=\? AND expires_at<\?\)/);
  });
});
