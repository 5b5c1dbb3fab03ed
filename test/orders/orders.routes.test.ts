import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import {
  available,
  backdateExpiry,
  cancelOrder,
  createUserCoupon,
  orderRow,
  payOrder,
  placedOrderId,
  placeOrder,
  userCouponRow,
} from "../support/orders";

const countOrders = async () => (await env.DB.prepare("SELECT count(*) AS n FROM orders").first<number>("n"))!;

describe("POST /api/v1/orders", () => {
  it("reserves stock, snapshots prices and answers 201 NOT_PAID with the amounts", async () => {
    const userId = await createUser();
    const a = await createProduct(1_200, 10);
    const b = await createProduct(700, 5);
    const before = Date.now();
    const res = await placeOrder(userId, [
      [b, 2],
      [a, 3],
    ]);
    expect(res.status).toBe(201);
    expect(res.body.message).toBe("리소스가 성공적으로 생성되었습니다.");
    expect(res.body.data).toMatchObject({ status: "NOT_PAID", itemsAmount: 5_000, discountAmount: 0, totalAmount: 5_000 });
    const expiresAt = Date.parse(res.body.data.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 900_000);
    expect(expiresAt).toBeLessThan(Date.now() + 901_000);
    expect(await available(a)).toBe(7);
    expect(await available(b)).toBe(3);
    await assertStockConservation([a, b], [10, 5]);
  });

  it("applies a RATE coupon (floored) and marks the user coupon used by the order", async () => {
    const userId = await createUser();
    const p = await createProduct(1_234, 10);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "RATE", discountValue: 15 }));
    const res = await placeOrder(userId, [[p, 7]], uc);
    expect(res.status).toBe(201);
    expect(res.body.data).toMatchObject({ itemsAmount: 8_638, discountAmount: 1_295, totalAmount: 7_343 });
    expect(await userCouponRow(uc)).toMatchObject({ order_id: res.body.data.orderId });
  });

  it("caps an AMOUNT coupon at the items amount (total 0)", async () => {
    const userId = await createUser();
    const p = await createProduct(500, 10);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 10_000 }));
    const res = await placeOrder(userId, [[p, 1]], uc);
    expect(res.body.data).toMatchObject({ itemsAmount: 500, discountAmount: 500, totalAmount: 0 });
  });

  it("answers 404 USER_NOT_FOUND and PRODUCT_NOT_FOUND without creating anything", async () => {
    const p = await createProduct(100, 3);
    const userId = await createUser();
    const n = await countOrders();
    expect(errorCode(await placeOrder(9_999_999, [[p, 1]]))).toBe("USER_NOT_FOUND");
    const missing = await placeOrder(userId, [
      [p, 1],
      [9_999_999, 1],
    ]);
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe("PRODUCT_NOT_FOUND");
    expect(await countOrders()).toBe(n);
    expect(await available(p)).toBe(3);
  });

  it("refuses someone else's or an unknown coupon (COUPON_NOT_OWNED), a used one and an expired one", async () => {
    const owner = await createUser();
    const other = await createUser();
    const p = await createProduct(1_000, 10);
    const couponId = await createCoupon();
    const ownersCoupon = await createUserCoupon(owner, couponId);
    const n = await countOrders();
    expect(errorCode(await placeOrder(other, [[p, 1]], ownersCoupon))).toBe("COUPON_NOT_OWNED");
    expect(errorCode(await placeOrder(other, [[p, 1]], 9_999_999))).toBe("COUPON_NOT_OWNED");
    const expired = await createUserCoupon(other, couponId, { issuedAt: Date.now() - 10 * 86_400_000, expiresAt: Date.now() - 1 });
    const res = await placeOrder(other, [[p, 1]], expired);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("COUPON_EXPIRED");
    expect(await countOrders()).toBe(n);
    await placedOrderId(owner, [[p, 1]], ownersCoupon);
    expect(errorCode(await placeOrder(owner, [[p, 1]], ownersCoupon))).toBe("COUPON_ALREADY_USED");
    await assertStockConservation([p], 10);
  });

  it("answers 409 INSUFFICIENT_STOCK, releases what it took and leaves no visible order", async () => {
    const userId = await createUser();
    const a = await createProduct(100, 5);
    const b = await createProduct(100, 1);
    const res = await placeOrder(userId, [
      [a, 3],
      [b, 2],
    ]);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("INSUFFICIENT_STOCK");
    expect(await available(a)).toBe(5);
    expect(await available(b)).toBe(1);
    const failed = await env.DB.prepare("SELECT id, status, closed_at FROM orders WHERE user_id = ?").bind(userId).first<any>();
    expect(failed).toMatchObject({ status: "FAILED" });
    expect(failed.closed_at).not.toBeNull();
    expect(errorCode(await api.get(`/api/v1/orders/${failed.id}?userId=${userId}`))).toBe("ORDER_NOT_FOUND");
    await assertStockConservation([a, b], [5, 1]);
  });

  describe("validation (400 envelope, nothing changes)", () => {
    it.each([
      [
        "51 products",
        (u: number, p: number) => ({ userId: u, orderProducts: Array.from({ length: 51 }, (_, i) => ({ productId: p + i, quantity: 1 })) }),
        "VALIDATION_FAILED",
      ],
      ["no products", (u: number) => ({ userId: u, orderProducts: [] }), "VALIDATION_FAILED"],
      [
        "duplicate productIds",
        (u: number, p: number) => ({
          userId: u,
          orderProducts: [
            { productId: p, quantity: 1 },
            { productId: p, quantity: 2 },
          ],
        }),
        "VALIDATION_FAILED",
      ],
      ["quantity 0", (u: number, p: number) => ({ userId: u, orderProducts: [{ productId: p, quantity: 0 }] }), "INVALID_QUANTITY"],
      ["quantity 1001", (u: number, p: number) => ({ userId: u, orderProducts: [{ productId: p, quantity: 1_001 }] }), "INVALID_QUANTITY"],
      ["quantity 1.5", (u: number, p: number) => ({ userId: u, orderProducts: [{ productId: p, quantity: 1.5 }] }), "INVALID_QUANTITY"],
      [
        "unknown top-level field",
        (u: number, p: number) => ({ userId: u, orderProducts: [{ productId: p, quantity: 1 }], note: "x" }),
        "VALIDATION_FAILED",
      ],
      [
        "unknown line field",
        (u: number, p: number) => ({ userId: u, orderProducts: [{ productId: p, quantity: 1, price: 1 }] }),
        "VALIDATION_FAILED",
      ],
      ["bad userId", (_u: number, p: number) => ({ userId: 0, orderProducts: [{ productId: p, quantity: 1 }] }), "INVALID_USER_ID"],
      ["bad productId", (u: number) => ({ userId: u, orderProducts: [{ productId: -1, quantity: 1 }] }), "INVALID_PRODUCT_ID"],
    ])("refuses %s", async (_name, body, code) => {
      const userId = await createUser();
      const p = await createProduct(100, 4);
      const n = await countOrders();
      const res = await api.post("/api/v1/orders", body(userId, p));
      expect(res.status).toBe(400);
      expect(errorCode(res)).toBe(code);
      expect(res.body.message).toBe("잘못된 요청입니다.");
      expect(await countOrders()).toBe(n);
      expect(await available(p)).toBe(4);
    });

    it("accepts exactly 50 distinct products and quantity 1,000", async () => {
      const userId = await createUser();
      const ids: number[] = [];
      for (let i = 0; i < 50; i++) ids.push(await createProduct(10, 1_000));
      const res = await placeOrder(
        userId,
        ids.map((id) => [id, 1_000] as [number, number]),
      );
      expect(res.status).toBe(201);
      expect(res.body.data.itemsAmount).toBe(50 * 10_000);
      await assertStockConservation(ids, 1_000);
    });
  });
});

describe("GET /api/v1/orders/{orderId}", () => {
  it("returns the order with its lines", async () => {
    const userId = await createUser();
    const a = await createProduct(300, 10);
    const b = await createProduct(200, 10);
    const orderId = await placedOrderId(userId, [
      [b, 1],
      [a, 2],
    ]);
    const res = await api.get(`/api/v1/orders/${orderId}?userId=${userId}`);
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({
      orderId,
      userId,
      status: "NOT_PAID",
      itemsAmount: 800,
      discountAmount: 0,
      totalAmount: 800,
      userCouponId: null,
      paidAt: null,
      items: [
        { productId: a, quantity: 2, unitPrice: 300, amount: 600 },
        { productId: b, quantity: 1, unitPrice: 200, amount: 200 },
      ],
    });
    expect(Date.parse(res.body.data.createdAt)).not.toBeNaN();
  });

  it("hides someone else's order and unknown ids behind 404 ORDER_NOT_FOUND; bad ids are 400", async () => {
    const owner = await createUser();
    const other = await createUser();
    const orderId = await placedOrderId(owner, [[await createProduct(), 1]]);
    expect(errorCode(await api.get(`/api/v1/orders/${orderId}?userId=${other}`))).toBe("ORDER_NOT_FOUND");
    expect(errorCode(await api.get(`/api/v1/orders/99999999?userId=${owner}`))).toBe("ORDER_NOT_FOUND");
    expect(errorCode(await api.get(`/api/v1/orders/abc?userId=${owner}`))).toBe("INVALID_ORDER_ID");
    expect(errorCode(await api.get(`/api/v1/orders/${orderId}`))).toBe("VALIDATION_FAILED");
  });

  it("shows an unpaid order past its deadline as EXPIRED before the cron has run", async () => {
    const userId = await createUser();
    const orderId = await placedOrderId(userId, [[await createProduct(), 1]]);
    await backdateExpiry(orderId);
    expect((await api.get(`/api/v1/orders/${orderId}?userId=${userId}`)).body.data.status).toBe("EXPIRED");
  });
});

describe("POST /api/v1/orders/{orderId}/cancel", () => {
  it("cancels an unpaid order, releases the stock and restores the coupon; repeating returns it", async () => {
    const userId = await createUser();
    const p = await createProduct(1_000, 5);
    const uc = await createUserCoupon(userId, await createCoupon());
    const orderId = await placedOrderId(userId, [[p, 4]], uc);
    expect(await available(p)).toBe(1);
    const res = await cancelOrder(userId, orderId);
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ orderId, status: "CANCELLED", userCouponId: uc });
    expect(await available(p)).toBe(5);
    expect(await userCouponRow(uc)).toEqual({ used_at: null, order_id: null });
    expect((await orderRow(orderId))!.closed_at).not.toBeNull();
    const again = await cancelOrder(userId, orderId);
    expect(again.status).toBe(200);
    expect(again.body.data.status).toBe("CANCELLED");
    expect(await available(p)).toBe(5);
    // The restored coupon works again.
    expect((await placeOrder(userId, [[p, 1]], uc)).status).toBe(201);
    await assertStockConservation([p], 5);
  });

  it("refuses PAID and EXPIRED orders with 409 ORDER_NOT_CANCELLABLE and someone else's with 404", async () => {
    const userId = await createUser(100_000);
    const other = await createUser();
    const p = await createProduct(1_000, 10);
    const paid = await placedOrderId(userId, [[p, 1]]);
    expect((await payOrder(userId, paid)).status).toBe(200);
    const res = await cancelOrder(userId, paid);
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("ORDER_NOT_CANCELLABLE");
    const late = await placedOrderId(userId, [[p, 2]]);
    await backdateExpiry(late);
    expect(errorCode(await cancelOrder(userId, late))).toBe("ORDER_NOT_CANCELLABLE");
    const mine = await placedOrderId(userId, [[p, 3]]);
    expect(errorCode(await cancelOrder(other, mine))).toBe("ORDER_NOT_FOUND");
    expect((await orderRow(mine))!.status).toBe("NOT_PAID");
    expect(errorCode(await api.post(`/api/v1/orders/${mine}/cancel`, { userId, extra: 1 }))).toBe("VALIDATION_FAILED");
  });
});

describe("OpenAPI document", () => {
  it("describes the order, payment and stock routes", async () => {
    const doc = (await api.get("/openapi.json")).body;
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/orders",
        "/api/v1/orders/{orderId}",
        "/api/v1/orders/{orderId}/cancel",
        "/api/v1/points/use",
        "/api/v1/admin/products/{productId}/stock",
      ]),
    );
  });
});
