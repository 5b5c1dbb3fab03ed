/** Issue 19 finding 2 (orders): an idempotent retry must never be refused by its own twin. */
import { describe, expect, it, onTestFinished } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { ProductStock } from "../../src/products/product-stock.do";
import { api, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { stockStub } from "../support/orders";

describe("finding 2 (orders): a retry with the same Idempotency-Key while the first attempt holds the last unit", () => {
  it("the first attempt's 201 stands, the twin never stores a refusal of its own, and a later retry replays the 201", async () => {
    const user = await createUser(100_000);
    const product = await createProduct(1_000, 1); // the last unit
    let open!: () => void;
    let arrived!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const reached = new Promise<void>((r) => (arrived = r));
    let reserves = 0;
    // The first attempt's reservation takes the unit, then its answer is slow (a slow network, a busy object).
    // (RPC calls only methods of the class: the hook goes on the prototype, for this one object.)
    const target = await runInDurableObject(stockStub(product), (instance: ProductStock) => instance);
    const real = ProductStock.prototype.reserve;
    ProductStock.prototype.reserve = async function (this: ProductStock, ...args: Parameters<ProductStock["reserve"]>) {
      const out = await real.apply(this, args);
      if (this === target && reserves++ === 0) {
        arrived();
        await opened;
      }
      return out;
    };
    onTestFinished(() => {
      ProductStock.prototype.reserve = real;
    });
    const headers = { "idempotency-key": "order-twin-1" };
    const body = { userId: user, orderProducts: [{ productId: product, quantity: 1 }] };
    const firstAttempt = api.post("/api/v1/orders", body, headers);
    await reached;
    const twin = await api.post("/api/v1/orders", body, headers);
    open();
    const first = await firstAttempt;
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    // The twin could not know the answer yet: "in progress", not stored; never INSUFFICIENT_STOCK.
    if (twin.status !== 201) expect(errorCode(twin)).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
    else expect(twin.body.data).toEqual(first.body.data);
    const retry = await api.post("/api/v1/orders", body, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(retry.body.data).toEqual(first.body.data);
    await assertStockConservation([product], 1);
  });
});
