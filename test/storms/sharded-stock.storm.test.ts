import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { expireOrders } from "../../src/orders/order-expiry.job";
import { OrderSweepRepo } from "../../src/orders/order-sweep.repo";
import { DurableObjectStock } from "../../src/products/product-stock.client";
import { hopsOf } from "../../src/shared/hops";
import { adminHeaders, api, type ApiResponse, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { backdateExpiry, cancelOrder, payOrder, placeOrder } from "../support/orders";

const K = 8;
const tally = (xs: (number | string)[]) => {
  const counts: Record<string, number> = {};
  for (const x of xs) counts[x] = (counts[x] ?? 0) + 1;
  return counts;
};

async function createShardedProduct(stock: number, stockShards: number): Promise<number> {
  const res = await api.post("/api/v1/admin/products", { name: "hot phone", price: 100, stock, stockShards }, adminHeaders);
  if (res.status !== 201) throw new Error(`createProduct: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data.productId;
}

/** A client that retries a 503 (SHARDS_BUSY or an overloaded object) a few times, as told by Retry-After. */
async function placeRetrying(userId: number, productId: number, quantity: number): Promise<{ res: ApiResponse; tries: number }> {
  for (let tries = 1; ; tries++) {
    const res = await placeOrder(userId, [[productId, quantity]]);
    if (res.status !== 503 || tries === 10) return { res, tries };
  }
}

const shardsOf = async (productId: number) => (await api.get(`/api/v1/admin/products/${productId}/stock-shards`, adminHeaders)).body.data;

describe(`a hot product over K = ${K} stock shards`, () => {
  it("sells exactly its 300 units to 400 concurrent orders (some larger than a shard's share), and stays conserved through pay, cancel and expiry", async () => {
    const users: number[] = [];
    for (let i = 0; i < 8; i++) users.push(await createUser(1_000_000));
    const p = await createShardedProduct(300, K);

    // Created split: every shard primed, shards 1..7 took about a fair share from shard 0.
    const start = await shardsOf(p);
    expect(start.stockShards).toBe(K);
    expect(start.total).toEqual({ available: 300, held: 0, confirmed: 0, sold: 0 });
    for (const s of start.shards) {
      expect(s.available, `shard ${s.shard} starts with a share`).toBeGreaterThan(0);
      expect(s.projected, `shard ${s.shard} projected`).toBe(s.available);
    }
    await assertStockConservation([p], 300);

    // 400 single-line orders: 20 of 45 units (more than any shard's share of about 38), 380 of one.
    const quantities = Array.from({ length: 400 }, (_, i) => (i % 20 === 0 ? 45 : 1));
    const results = await Promise.all(quantities.map((q, i) => placeRetrying(users[i % users.length]!, p, q)));
    const statuses = tally(results.map((r) => r.res.status));
    const placed = results.flatMap((r, i) =>
      r.res.status === 201
        ? [{ orderId: r.res.body.data.orderId as number, quantity: quantities[i]!, user: users[i % users.length]! }]
        : [],
    );
    expect(statuses[503] ?? 0, `no order left unanswered after retries: ${JSON.stringify(statuses)}`).toBe(0);
    for (const r of results.filter((r) => r.res.status !== 201)) expect(errorCode(r.res)).toBe("INSUFFICIENT_STOCK");
    // A one-unit order was refused (380 of them exceed the stock), which "dry" only says once every shard was empty: all 300 are taken.
    expect(placed.reduce((a, o) => a + o.quantity, 0)).toBe(300);
    const hops = results.map((r) => hopsOf(r.res.headers.get("server-timing")) ?? 0);
    expect(Math.min(...hops)).toBeGreaterThanOrEqual(3); // a borrow adds its sibling rounds, never hides them
    const lines = await env.DB.prepare("SELECT order_id AS o, stock_shard AS s FROM order_items WHERE product_id = ?")
      .bind(p)
      .all<{ o: number; s: number }>();
    for (const l of lines.results) expect(l.s, `order ${l.o}`).toBe(l.o % K);
    expect(new Set(placed.map((o) => lines.results.find((l) => l.o === o.orderId)!.s)).size, "orders land on every shard").toBe(K);
    expect((await shardsOf(p)).total).toEqual({ available: 0, held: 0, confirmed: 300, sold: 0 });
    await assertStockConservation([p], 300);

    // Pay a third, cancel a third, let the rest expire: units go back to the shards that held them.
    const third = Math.floor(placed.length / 3);
    const [toPay, toCancel, toExpire] = [placed.slice(0, third), placed.slice(third, 2 * third), placed.slice(2 * third)];
    for (const o of toPay) expect((await payOrder(o.user, o.orderId)).status).toBe(200);
    for (const o of toCancel) expect((await cancelOrder(o.user, o.orderId)).status).toBe(200);
    for (const o of toExpire) await backdateExpiry(o.orderId);
    const expired = await expireOrders({ sweep: new OrderSweepRepo(env.DB), stock: new DurableObjectStock(env.PRODUCT_STOCK) }, Date.now());
    expect(expired).toBe(toExpire.length);
    const sold = toPay.reduce((a, o) => a + o.quantity, 0);
    const view = await shardsOf(p);
    expect(view.total).toEqual({ available: 300 - sold, held: 0, confirmed: 0, sold });
    await assertStockConservation([p], 300);

    // The freed units sit on several shards; a second wave still finds every one of them.
    // No wait: shard 0 says "none left" from its own state, never from a remembered proof.
    const left = 300 - sold;
    const second = await Promise.all(Array.from({ length: left + 40 }, (_, i) => placeRetrying(users[i % users.length]!, p, 1)));
    expect(tally(second.map((r) => r.res.status))).toEqual({ 201: left, 409: 40 });
    await assertStockConservation([p], 300);
  }, 120_000);
});
