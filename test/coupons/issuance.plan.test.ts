import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

/** Query plans (rows a statement touches) are deterministic costs: pinned here, not timed. */
const plan = async (sql: string, ...binds: unknown[]) =>
  (
    await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...binds)
      .all<{ detail: string }>()
  ).results.map((r) => r.detail);

describe("query plans of the coupon hot path", () => {
  it("reads a group's rows back through UNIQUE(user_id, coupon_id), never the coupon's other rows", async () => {
    const mine = "json_each(?2) j CROSS JOIN user_coupons uc ON uc.user_id = json_extract(j.value, '$.u') AND uc.coupon_id = ?1";
    const steps = await plan(`SELECT uc.user_id, uc.id FROM ${mine}`, 1, "[]");
    expect(steps).toEqual([
      expect.stringMatching(/^SCAN j VIRTUAL TABLE/),
      expect.stringContaining("USING COVERING INDEX user_coupons_user_coupon_uq (user_id=? AND coupon_id=?)"),
    ]);
  });

  it("inserts a user coupon without scanning orders for the foreign key (orders_user_coupon_id_idx)", async () => {
    const steps = await plan(
      `INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at)
       SELECT json_extract(r.value, '$.u'), ?1, 0, 1 FROM json_each(?2) r WHERE EXISTS (SELECT 1 FROM users WHERE id = json_extract(r.value, '$.u'))
       ON CONFLICT (user_id, coupon_id) DO NOTHING`,
      1,
      "[]",
    );
    expect(steps.join(" | ")).not.toMatch(/SCAN orders/);
    expect(steps.join(" | ")).toMatch(/SEARCH orders USING COVERING INDEX orders_user_coupon_id_idx/);
  });

  it("reads a load step's page by (coupon_id, id) on user_coupons_coupon_id_idx: no scan, no sort, whatever the coupon's size", async () => {
    const steps = await plan(
      "SELECT id, user_id, issued_at, expires_at FROM user_coupons WHERE coupon_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
      1,
      0,
      10,
    );
    expect(steps).toEqual([
      expect.stringContaining("SEARCH user_coupons USING INDEX user_coupons_coupon_id_idx (coupon_id=? AND rowid>?)"),
    ]);
  });
});
