import { beforeAll, describe, expect, it } from "vitest";
import { api, createProduct, errorCode } from "../support/http";

describe("GET /api/v1/products", () => {
  let ids: number[] = [];
  beforeAll(async () => {
    ids = [];
    for (let i = 0; i < 12; i++) ids.push(await createProduct(1000 + i, 5 + i, `p${i}`));
  });

  it("returns zero-based pages ordered by id with the total count", async () => {
    const first = await api.get("/api/v1/products?page=0&size=5");
    expect(first.status).toBe(200);
    expect(first.body.data.page).toBe(0);
    expect(first.body.data.size).toBe(5);
    expect(first.body.data.total).toBe(12);
    expect(first.body.data.products.map((p: any) => p.productId)).toEqual(ids.slice(0, 5));
    expect(first.body.data.products[0]).toEqual({ productId: ids[0], productName: "p0", price: 1000, stock: 5 });
    const last = await api.get("/api/v1/products?page=2&size=5");
    expect(last.body.data.products.map((p: any) => p.productId)).toEqual(ids.slice(10));
    const beyond = await api.get("/api/v1/products?page=9&size=5");
    expect(beyond.body.data.products).toEqual([]);
  });

  it("defaults to page 0, size 10", async () => {
    const res = await api.get("/api/v1/products");
    expect(res.body.data).toMatchObject({ page: 0, size: 10 });
    expect(res.body.data.products).toHaveLength(10);
  });

  it.each(["size=0", "size=101", "size=abc", "page=-1", "page=1.5", "size=10&extra=1"])(
    "refuses %s with 400 (not clamped)",
    async (query) => {
      const res = await api.get(`/api/v1/products?${query}`);
      expect(res.status).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    },
  );
});

describe("GET /api/v1/products/{productId}", () => {
  it("returns one product with its description", async () => {
    const id = await createProduct(2500, 3, "desk");
    const res = await api.get(`/api/v1/products/${id}`);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ productId: id, productName: "desk", description: "", price: 2500, stock: 3 });
  });

  it("refuses unknown query parameters like every other route", async () => {
    const id = await createProduct();
    const res = await api.get(`/api/v1/products/${id}?debug=1`);
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe("VALIDATION_FAILED");
  });

  it("answers 404 PRODUCT_NOT_FOUND and 400 INVALID_PRODUCT_ID", async () => {
    expect(errorCode(await api.get("/api/v1/products/999999"))).toBe("PRODUCT_NOT_FOUND");
    for (const bad of ["0", "-3", "abc", "1e3", "99999999999999999999"]) {
      const res = await api.get(`/api/v1/products/${bad}`);
      expect(res.status, bad).toBe(400);
      expect(errorCode(res), bad).toBe("INVALID_PRODUCT_ID");
    }
  });
});
