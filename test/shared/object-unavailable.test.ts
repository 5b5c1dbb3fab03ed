import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { adminHeaders, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { testApp } from "../support/secure-app";
import { assertStockConservation } from "../support/invariants";
import { available, backdateExpiry, orderRow, placedOrderId } from "../support/orders";
import { runOrderMaintenance, SETTLE_GRACE_MS } from "../../src/orders/order-expiry.job";
import { OrderSweepRepo } from "../../src/orders/order-sweep.repo";
import { DurableObjectStock } from "../../src/products/product-stock.client";

/** A namespace whose objects always throw, the way a reset, overloaded or unreachable object does. */
function throwingNamespace(message: string) {
  const fail = () => Promise.reject(new Error(message));
  const stub = new Proxy({}, { get: () => fail });
  return { idFromName: (name: string) => name, get: () => stub } as unknown as DurableObjectNamespace;
}

const FAILURES = [
  "Durable Object is overloaded. Requests queued for too long.",
  "Durable Object reset because its code was updated.",
  "Network connection lost.",
];

describe("an unreachable or overloaded Durable Object is 503 with Retry-After, never 500", () => {
  for (const message of FAILURES) {
    it(`coupon issue, order placement and admin restock: "${message}"`, async () => {
      const userId = await createUser(10_000);
      const couponId = await createCoupon();
      const productId = await createProduct(100, 5);
      const app = testApp({ COUPON_ISSUER: throwingNamespace(message), PRODUCT_STOCK: throwingNamespace(message) } as unknown as Record<
        string,
        string
      >);

      const issued = await app.post("/api/v1/coupons/issue", { userId, couponId });
      expect(issued.status).toBe(503);
      expect(errorCode(issued)).toBe("SERVICE_UNAVAILABLE");
      expect(issued.headers.get("retry-after")).toBe("1");

      const placed = await app.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 1 }] });
      expect(placed.status).toBe(503);
      expect(placed.headers.get("retry-after")).toBe("1");

      const restock = await app.patch(`/api/v1/admin/products/${productId}/stock`, { delta: 1 }, adminHeaders);
      expect(restock.status).toBe(503);

      // Nothing was issued or kept: the attempt is FAILED and the real object still has all its units.
      const owned = await env.DB.prepare("SELECT count(*) AS n FROM user_coupons WHERE user_id = ?").bind(userId).first("n");
      expect(owned).toBe(0);
      await assertStockConservation([productId], 5);
    });
  }
});

describe("cancel and the crons with an unreachable stock object: never 500, never a lost release", () => {
  it("cancel answers 200 CANCELLED; the cron's release fails, backs off, and succeeds once the object answers", async () => {
    const userId = await createUser(10_000);
    const p = await createProduct(100, 5);
    const cancelled = await placedOrderId(userId, [[p, 2]]);
    const expiring = await placedOrderId(userId, [[p, 1]]);
    const down = throwingNamespace("Durable Object is overloaded. Requests queued for too long.");
    const res = await testApp({ PRODUCT_STOCK: down } as unknown as Record<string, string>).post(`/api/v1/orders/${cancelled}/cancel`, {
      userId,
    });
    expect(res.status).toBe(200);
    expect(res.body.data.status).toBe("CANCELLED");
    expect(await orderRow(cancelled)).toMatchObject({ status: "CANCELLED", closed_at: null });
    await backdateExpiry(expiring);

    // The every-minute maintenance with the object down: it expires, cannot release, and keeps both for later.
    const sweep = new OrderSweepRepo(env.DB);
    const later = Date.now() + SETTLE_GRACE_MS + 1_000;
    const report = await runOrderMaintenance({ sweep, stock: new DurableObjectStock(down as never) }, later);
    expect(report).toMatchObject({ expired: 1, settled: 0 });
    expect(await orderRow(expiring)).toMatchObject({ status: "EXPIRED", closed_at: null, settle_attempts: 1 });
    expect(await available(p)).toBe(2);

    // The object is back: after the backoff the cron releases both.
    const back = await runOrderMaintenance({ sweep, stock: new DurableObjectStock(env.PRODUCT_STOCK) }, later + 3_600_000);
    expect(back.settled).toBeGreaterThanOrEqual(2); // (with the placements the tests above left unsettled)
    for (const id of [cancelled, expiring]) expect((await orderRow(id))!.closed_at).not.toBeNull();
    expect(await available(p)).toBe(5);
    await assertStockConservation([p], 5);
  });
});
