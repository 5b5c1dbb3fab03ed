import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createProduct, createUser, errorCode } from "../support/http";
import { runJob } from "../support/jobs";
import { insertPaidOrder } from "../support/sales";
import { RankingsRepo } from "../../src/rankings/rankings.repo";
import { addDays, businessDate, startOfBusinessDay } from "../../src/shared/clock";

const TZ = "Asia/Seoul";

describe("rankings without Redis (D1 path)", () => {
  it("the ranking repair job reads nothing from D1 when there is no Redis ranking to rebuild", async () => {
    const { result, d1 } = await runJob("*/10 * * * *", "ranking-repair");
    expect(result).toEqual({ date: businessDate(Date.now(), TZ), products: 0, written: false });
    expect(d1).toEqual({ calls: 0, rowsRead: 0, rowsWritten: 0, writeTx: 0 });
  });

  it("GET /products/top ranks today's paid quantity, ties by id, and ignores other days", async () => {
    const userId = await createUser();
    const [a, b, c] = [await createProduct(100), await createProduct(200), await createProduct(300)];
    const now = Date.now();
    await insertPaidOrder(userId, now, [
      { productId: a, quantity: 2 },
      { productId: b, quantity: 5 },
    ]);
    await insertPaidOrder(userId, now, [{ productId: c, quantity: 2 }]);
    // Another day (four days ago: outside today and outside the best-seller window of the next test).
    await insertPaidOrder(userId, startOfBusinessDay(addDays(businessDate(now, TZ), -3), TZ) - 1, [{ productId: a, quantity: 100 }]);
    const res = await api.get("/api/v1/products/top?size=10");
    expect(res.status).toBe(200);
    expect(res.body.data.date).toBe(businessDate(now, TZ));
    expect(res.body.data.products.map((p: any) => [p.productId, p.sales])).toEqual([
      [b, 5],
      [a, 2],
      [c, 2],
    ]);
    expect(res.body.data.products[0]).toMatchObject({ productName: "product", price: 200, stock: 10 });
    const one = await api.get("/api/v1/products/top?size=1");
    expect(one.body.data.products).toHaveLength(1);
  });

  it("refuses size outside 1..100", async () => {
    for (const q of ["size=0", "size=101", "size=x", "other=1"]) {
      const res = await api.get(`/api/v1/products/top?${q}`);
      expect(res.status, q).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
  });

  it("GET /products/best covers exactly the three business days before today (live query)", async () => {
    const userId = await createUser();
    const ids = [];
    for (let i = 0; i < 7; i++) ids.push(await createProduct(1000 + i));
    const today = businessDate(Date.now(), TZ);
    const dayStart = (d: string) => startOfBusinessDay(d, TZ);
    // Inside the window: days -3..-1. Boundaries: last ms of day -4 and first ms of today are outside.
    await insertPaidOrder(userId, dayStart(addDays(today, -3)), [{ productId: ids[0]!, quantity: 10 }]);
    await insertPaidOrder(userId, dayStart(addDays(today, -2)) + 3_600_000, [
      { productId: ids[1]!, quantity: 9 },
      { productId: ids[2]!, quantity: 8 },
    ]);
    await insertPaidOrder(userId, dayStart(today) - 1, [
      { productId: ids[3]!, quantity: 7 },
      { productId: ids[4]!, quantity: 6 },
      { productId: ids[5]!, quantity: 5 },
    ]);
    await insertPaidOrder(userId, dayStart(addDays(today, -3)) - 1, [{ productId: ids[6]!, quantity: 1000 }]);
    await insertPaidOrder(userId, dayStart(today), [{ productId: ids[6]!, quantity: 1000 }]);
    const res = await api.get("/api/v1/products/best");
    expect(res.status).toBe(200);
    expect(res.body.data.from).toBe(addDays(today, -3));
    expect(res.body.data.to).toBe(addDays(today, -1));
    expect(res.body.data.bestSellers.map((p: any) => [p.productId, p.sales])).toEqual([
      [ids[0], 10],
      [ids[1], 9],
      [ids[2], 8],
      [ids[3], 7],
      [ids[4], 6],
    ]);
    // With no snapshot yet, the live result became today's snapshot, so later reads skip the range scan.
    const snap = await env.DB.prepare(
      "SELECT rank, product_id AS productId, sales FROM best_seller_snapshots WHERE business_date = ? ORDER BY rank",
    )
      .bind(today)
      .all();
    expect(snap.results).toEqual([
      { rank: 1, productId: ids[0], sales: 10 },
      { rank: 2, productId: ids[1], sales: 9 },
      { rank: 3, productId: ids[2], sales: 8 },
      { rank: 4, productId: ids[3], sales: 7 },
      { rank: 5, productId: ids[4], sales: 6 },
    ]);
  });

  it("the live best-seller query uses the (paid_at, product_id, quantity) index", async () => {
    const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${RankingsRepo.SALES_SQL}`).bind(0, 1, 5).all<{ detail: string }>();
    const details = plan.results.map((r) => r.detail).join(" | ");
    expect(details).toMatch(/USING COVERING INDEX order_items_paid_at_product_idx/);
    expect(details).not.toMatch(/SCAN order_items(?! USING)/);
  });

  it("the refresh job writes the D1 snapshot that later reads serve", async () => {
    const userId = await createUser();
    const p = await createProduct(500);
    const today = businessDate(Date.now(), TZ);
    await insertPaidOrder(userId, startOfBusinessDay(addDays(today, -1), TZ) + 10, [{ productId: p, quantity: 50 }]);
    const { createServices } = await import("../../src/services");
    const { loadConfig } = await import("../../src/config");
    const services = createServices(env, loadConfig(env));
    const refreshed = await services.rankings.refreshBestSellers();
    expect(refreshed.date).toBe(today);
    const rows = await env.DB.prepare(
      "SELECT rank, product_id, sales, from_date, to_date FROM best_seller_snapshots WHERE business_date = ?",
    )
      .bind(today)
      .all();
    expect(rows.results.length).toBeGreaterThan(0);
    expect(rows.results).toContainEqual({
      rank: expect.any(Number),
      product_id: p,
      sales: 50,
      from_date: addDays(today, -3),
      to_date: addDays(today, -1),
    });
    // A sale written after the snapshot is not visible until the next refresh: reads use the snapshot.
    await insertPaidOrder(userId, startOfBusinessDay(addDays(today, -1), TZ) + 20, [{ productId: p, quantity: 1000 }]);
    // With a bookmark after the refresh (read-your-writes), so an edge-cached answer from an earlier test is skipped.
    const session = env.DB.withSession("first-primary");
    await session.prepare("SELECT 1").first();
    const best = await api.get("/api/v1/products/best", { "x-d1-bookmark": session.getBookmark()! });
    expect(best.body.data.bestSellers.find((x: any) => x.productId === p).sales).toBe(50);
  });
});
