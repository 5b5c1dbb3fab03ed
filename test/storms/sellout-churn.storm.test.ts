/**
 * Issue 19 item 5: the sell-out of a K = 8 product under churn. Units come back one by one (cancels,
 * expiries) while placements keep arriving and payments settle others: every placement is answered 201
 * or 409 (503 only for an unreachable shard: none here), within 5 sequential hops at p99, and stock is
 * conserved with exact counts.
 */
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
const STOCK = 40;

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * 0.99) - 1]!;

describe(`the sell-out of a K = ${K} product under churn`, () => {
  it("orders, cancels, expiries and payments around the last units: only 201 or 409, hop p99 <= 5, stock conserved", async () => {
    const users: number[] = [];
    for (let i = 0; i < 8; i++) users.push(await createUser(1_000_000));
    const res = await api.post("/api/v1/admin/products", { name: "churned", price: 100, stock: STOCK, stockShards: K }, adminHeaders);
    expect(res.status).toBe(201);
    const p = res.body.data.productId as number;

    const placements: ApiResponse[] = [];
    const live: { orderId: number; user: number }[] = [];
    const place = async (n: number, offset: number) => {
      const out = await Promise.all(Array.from({ length: n }, (_, i) => placeOrder(users[(offset + i) % users.length]!, [[p, 1]])));
      placements.push(...out);
      out.forEach((r, i) => {
        if (r.status === 201) live.push({ orderId: r.body.data.orderId, user: users[(offset + i) % users.length]! });
      });
      return out;
    };

    // The sale runs out: 60 orders for 40 units.
    const first = await place(60, 0);
    expect(first.filter((r) => r.status === 201)).toHaveLength(STOCK);

    // Churn at the sell-out: each round some units come back (cancels, expiries), some orders are paid,
    // and more orders than units arrive at the same time.
    let cancelled = 0;
    let expired = 0;
    let paid = 0;
    for (let round = 0; round < 6; round++) {
      const toCancel = live.splice(0, 3);
      const toExpire = live.splice(0, 2);
      const toPay = live.splice(0, 2);
      for (const o of toExpire) await backdateExpiry(o.orderId);
      const [cancels, expiredNow, pays] = await Promise.all([
        Promise.all(toCancel.map((o) => cancelOrder(o.user, o.orderId))),
        expireOrders({ sweep: new OrderSweepRepo(env.DB), stock: new DurableObjectStock(env.PRODUCT_STOCK) }, Date.now()),
        Promise.all(toPay.map((o) => payOrder(o.user, o.orderId))),
        place(12, round * 12),
      ]);
      for (const c of cancels) expect(c.status).toBe(200);
      for (const x of pays) expect(x.status).toBe(200);
      cancelled += toCancel.length;
      expired += expiredNow;
      paid += toPay.length;
    }
    expect(expired).toBe(12);

    // Every placement: 201 or 409 INSUFFICIENT_STOCK, never 503.
    const statuses = placements.map((r) => r.status);
    expect(
      statuses.filter((s) => s !== 201 && s !== 409),
      JSON.stringify(placements.filter((r) => r.status >= 500).map((r) => r.body)),
    ).toEqual([]);
    for (const r of placements.filter((r) => r.status === 409)) expect(errorCode(r)).toBe("INSUFFICIENT_STOCK");
    const hops = placements.map((r) => hopsOf(r.headers.get("server-timing")) ?? 0);
    expect(p99(hops), `hops (sequential) of every placement: ${JSON.stringify(hops)}`).toBeLessThanOrEqual(5);

    // Exact counts: what was placed, minus what came back, is what is reserved or sold.
    const placedUnits = statuses.filter((s) => s === 201).length;
    await assertStockConservation([p], STOCK);
    const view = (await api.get(`/api/v1/admin/products/${p}/stock-shards`, adminHeaders)).body.data;
    expect(view.total.sold).toBe(paid);
    expect(view.total.confirmed + view.total.held).toBe(placedUnits - cancelled - expired - paid);
    expect(view.total.available).toBe(STOCK - placedUnits + cancelled + expired);
    // No unit is hidden anywhere: a last wave takes exactly what is left, and then it is sold out.
    const left = view.total.available as number;
    const last = await place(left + 5, 0);
    expect(last.filter((r) => r.status === 201)).toHaveLength(left);
    expect(last.filter((r) => r.status === 409)).toHaveLength(5);
    await assertStockConservation([p], STOCK);
  }, 120_000);
});
