import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { adminHeaders, api, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { available, placedOrderId } from "../support/orders";

const patchStock = (productId: number, body: unknown, headers: Record<string, string> = adminHeaders) =>
  api.patch(`/api/v1/admin/products/${productId}/stock`, body, headers);

describe("PATCH /api/v1/admin/products/{productId}/stock", () => {
  it("restocks and reduces through the DO; products.stock follows", async () => {
    const p = await createProduct(100, 5);
    const up = await patchStock(p, { delta: 10 });
    expect(up.status).toBe(200);
    expect(up.body.data).toEqual({ productId: p, stock: 15 });
    expect((await patchStock(p, { delta: -4 })).body.data).toEqual({ productId: p, stock: 11 });
    expect(await available(p)).toBe(11);
    expect((await api.get(`/api/v1/products/${p}`)).body.data.stock).toBe(11);
    await assertStockConservation([p], 11);
  });

  it("never takes reserved units: reducing below what is available is 409 INSUFFICIENT_STOCK", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 5);
    await placedOrderId(userId, [[p, 3]]);
    const res = await patchStock(p, { delta: -3 });
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("INSUFFICIENT_STOCK");
    expect((await patchStock(p, { delta: -2 })).body.data.stock).toBe(0);
    await assertStockConservation([p], 5 - 2);
  });

  it("answers 404 for an unknown product, 400 for a zero, fractional or missing delta, 401 without a token", async () => {
    const p = await createProduct(100, 5);
    expect(errorCode(await patchStock(99_999_999, { delta: 1 }))).toBe("PRODUCT_NOT_FOUND");
    for (const body of [{ delta: 0 }, { delta: 1.5 }, {}, { delta: 1, x: 1 }]) {
      const res = await patchStock(p, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
    expect((await patchStock(p, { delta: 1 }, {})).status).toBe(401);
    expect(await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(p).first("stock")).toBe(5);
  });
});
