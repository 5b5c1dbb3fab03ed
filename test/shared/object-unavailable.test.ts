import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { adminHeaders, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { testApp } from "../support/secure-app";
import { assertStockConservation } from "../support/invariants";

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
      const app = testApp({ COUPON_ISSUER: throwingNamespace(message), PRODUCT_STOCK: throwingNamespace(message) } as unknown as Record<string, string>);

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
