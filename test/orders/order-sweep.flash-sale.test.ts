import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config";
import { ORDER_MAINTENANCE_SUBREQUESTS, runOrderMaintenance } from "../../src/orders/order-expiry.job";
import { OrderSweepRepo } from "../../src/orders/order-sweep.repo";
import { DurableObjectStock, type StockPort } from "../../src/products/product-stock.client";
import { SUBREQUESTS_PER_INVOCATION } from "../../src/shared/budget";
import { createServices } from "../../src/services";
import { createCoupon, createProduct } from "../support/http";
import { assertStockConservation } from "../support/invariants";

/** Counts every D1 call (query or batch) made through this binding: what Cloudflare counts as subrequests. */
function countingD1(d1: D1Database, count: { n: number }): D1Database {
  const wrapStmt = (s: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(s, {
      get(target, prop) {
        if (prop === "bind") return (...a: unknown[]) => wrapStmt(target.bind(...a));
        if (prop === "all" || prop === "run" || prop === "first" || prop === "raw") {
          return (...a: unknown[]) => {
            count.n++;
            return (target as any)[prop](...a);
          };
        }
        const v = (target as any)[prop];
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  return new Proxy(d1, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => wrapStmt(target.prepare(sql));
      if (prop === "batch") {
        return (stmts: D1PreparedStatement[]) => {
          count.n++;
          // The proxies unwrap to the real statements: D1 checks their class.
          return target.batch(stmts.map((s) => (s as any).__target ?? s));
        };
      }
      const v = (target as any)[prop];
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const ORDERS = 5_000;
const PRODUCTS = 5;
const WITH_COUPON = 1_000;

describe("a flash sale's expiry keeps up", () => {
  it("expires 5,000 orders due in the same minute, with stock and coupons restored, within two cron runs and inside the subrequest limit", async () => {
    const now = Date.now();
    const products: number[] = [];
    for (let i = 0; i < PRODUCTS; i++) products.push(await createProduct(100, ORDERS));
    const couponId = await createCoupon({ quantity: WITH_COUPON });
    // 5,000 users (one order each), 1,000 of them with a used coupon: rows written directly, as placement leaves them.
    const first = (await env.DB.prepare("SELECT coalesce(max(id), 0) + 1 AS id FROM users").first<number>("id"))!;
    await env.DB.prepare(
      `WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < ?1)
       INSERT INTO users (id, name, created_at) SELECT ?2 + k, 'flash', ?3 FROM n`,
    )
      .bind(ORDERS, first, now)
      .run();
    const orderBase = (await env.DB.prepare("SELECT coalesce(max(id), 0) + 1 AS id FROM orders").first<number>("id"))!;
    const ucBase = (await env.DB.prepare("SELECT coalesce(max(id), 0) + 1 AS id FROM user_coupons").first<number>("id"))!;
    await env.DB.batch([
      env.DB.prepare(
        `WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < ?1)
         INSERT INTO user_coupons (id, user_id, coupon_id, issued_at, expires_at, used_at, order_id)
         SELECT ?2 + k, ?3 + k, ?4, ?5 - 60000, ?5 + 86400000, ?5 - 30000, ?6 + k FROM n`,
      ).bind(WITH_COUPON, ucBase, first, couponId, now, orderBase),
      env.DB.prepare(
        `WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < ?1)
         INSERT INTO orders (id, user_id, user_coupon_id, status, items_amount, discount_amount, total_amount, created_at, expires_at, updated_at)
         SELECT ?2 + k, ?3 + k, CASE WHEN k < ?4 THEN ?5 + k END, 'NOT_PAID', 100, 0, 100, ?6 - 900000, ?6 - 1000 + (k % 60000), ?6 - 900000 FROM n`,
      ).bind(ORDERS, orderBase, first, WITH_COUPON, ucBase, now - 60_000),
      // One line per order, spread over the five products.
      env.DB.prepare(
        `INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount)
         SELECT o.id, json_extract(?2, '$[' || CAST((o.id - ?1) % ${PRODUCTS} AS INTEGER) || ']'), 1, 100, 100 FROM orders o WHERE o.id >= ?1`,
      ).bind(orderBase, JSON.stringify(products)),
    ]);
    const stock = new DurableObjectStock(env.PRODUCT_STOCK);
    for (let k = 0; k < ORDERS; k += 250) {
      await Promise.all(
        Array.from({ length: Math.min(250, ORDERS - k) }, (_, j) => {
          const id = orderBase + k + j;
          return stock
            .reserve({
              productId: products[(k + j) % PRODUCTS]!,
              orderId: id,
              quantity: 1,
              now,
              confirmed: true,
              at: { shard: 0, shards: 1 },
            })
            .then((r) => expect(r.ok).toBe(true));
        }),
      );
    }

    const d1Calls = { n: 0 };
    let objectCalls = 0;
    const counted: StockPort = Object.assign(Object.create(stock), {
      settleMany: (...a: Parameters<StockPort["settleMany"]>) => {
        objectCalls++;
        return stock.settleMany(...a);
      },
    });
    const s = createServices(env, loadConfig(env));
    const deps = { sweep: new OrderSweepRepo(countingD1(env.DB, d1Calls)), stock: counted, couponCache: s.userCouponCache };
    const runs = [];
    for (let run = 0; run < 2; run++) {
      const before = d1Calls.n + objectCalls;
      const report = await runOrderMaintenance(deps, now + run * 60_000);
      const spent = d1Calls.n + objectCalls - before;
      expect(report.subrequests, "the job's own count covers every call it made").toBeGreaterThanOrEqual(spent);
      expect(spent).toBeLessThanOrEqual(ORDER_MAINTENANCE_SUBREQUESTS);
      expect(ORDER_MAINTENANCE_SUBREQUESTS).toBeLessThan(SUBREQUESTS_PER_INVOCATION);
      runs.push(report);
    }
    expect(runs.reduce((a, r) => a + r.expired, 0)).toBe(ORDERS);

    const left = await env.DB.prepare("SELECT count(*) AS n FROM orders WHERE id >= ? AND (status != 'EXPIRED' OR closed_at IS NULL)")
      .bind(orderBase)
      .first<number>("n");
    expect(left, "every order EXPIRED and settled").toBe(0);
    const stillUsed = await env.DB.prepare("SELECT count(*) AS n FROM user_coupons WHERE coupon_id = ? AND used_at IS NOT NULL")
      .bind(couponId)
      .first<number>("n");
    expect(stillUsed, "every coupon given back").toBe(0);
    await assertStockConservation(products, ORDERS);
    for (const p of products) expect((await stock.snapshot(p))!.available).toBe(ORDERS);
  }, 120_000);
});
