import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { loadConfig } from "../../src/config";
import { placeObjects, type ObjectNamespace } from "../../src/shared/object-placement";
import { DurableObjectStock } from "../../src/products/product-stock.client";
import type { ProductStock } from "../../src/products/product-stock.do";
import { createCoupon, createProduct, createUser } from "../support/http";
import { testApp } from "../support/secure-app";

/** The real PRODUCT_STOCK namespace, noting the options of each get() it serves. */
function recording(seen: unknown[]): ObjectNamespace<ProductStock> {
  const ns = env.PRODUCT_STOCK;
  return {
    idFromName: (name) => ns.idFromName(name),
    get: (id, options) => {
      seen.push(options);
      return ns.get(id, options);
    },
  };
}

describe("Durable Object placement (DO_LOCATION_HINT)", () => {
  it("puts the hint on every get() of a stub, and the runtime accepts it", async () => {
    const productId = await createProduct(1_000, 7);
    const seen: unknown[] = [];
    const stock = new DurableObjectStock(placeObjects(recording(seen), "apac"));
    await stock.prime(productId, 2, false);
    expect((await stock.snapshot(productId))?.productId).toBe(productId);
    expect(seen).toEqual([{ locationHint: "apac" }, { locationHint: "apac" }, { locationHint: "apac" }]);
  });

  it("adds nothing without a hint (local development)", () => {
    const ns = env.PRODUCT_STOCK;
    expect(placeObjects(ns, undefined)).toBe(ns);
  });

  it("serves orders and coupon issuance with the hint set, as staging and production run", async () => {
    const app = testApp({ DO_LOCATION_HINT: "apac" });
    const userId = await createUser(10_000);
    const productId = await createProduct(1_000, 3);
    const couponId = await createCoupon({ quantity: 5 });
    expect((await app.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 2 }] })).status).toBe(201);
    expect((await app.post("/api/v1/coupons/issue", { userId, couponId })).status).toBe(201);
  });

  it("refuses a value that is not a location hint (a deployment bug, loud at the first request)", () => {
    expect(() => loadConfig({ ...env, DO_LOCATION_HINT: "seoul" })).toThrow(/DO_LOCATION_HINT/);
    expect(loadConfig({ ...env, DO_LOCATION_HINT: "apac" }).doLocationHint).toBe("apac");
    expect(loadConfig({ ...env, DO_LOCATION_HINT: "" }).doLocationHint).toBeUndefined();
  });
});
