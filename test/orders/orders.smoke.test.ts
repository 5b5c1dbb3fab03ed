import { describe, expect, it } from "vitest";
import { createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { payOrder, placeOrder } from "../support/orders";

describe("smoke", () => {
  it("places and pays", async () => {
    const userId = await createUser(100_000);
    const p = await createProduct(1000, 5);
    const res = await placeOrder(userId, [[p, 2]]);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const pay = await payOrder(userId, res.body.data.orderId);
    expect(pay.status, JSON.stringify(pay.body)).toBe(200);
    await assertStockConservation([p], 5);
  });
});
