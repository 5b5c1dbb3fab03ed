import { exports } from "cloudflare:workers";
import { hc } from "hono/client";
import { describe, expect, expectTypeOf, it } from "vitest";
import type { AppType } from "../../src/app";
import { ADMIN_TOKEN } from "../support/http";

/**
 * A front end's view of the API: `hc<AppType>` from hono/client, nothing hand-written. This file is
 * type-checked by `npm run typecheck` (tsconfig includes test/), so a route whose request or response
 * shape changes breaks the compile here, not only the run.
 */
const client = hc<AppType>("http://example.com", {
  // The Worker's own fetch handler (same isolate), as a browser's fetch would reach it.
  fetch: (input: RequestInfo | URL, init?: RequestInit) => exports.default.fetch(new Request(input, init)),
});
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };

describe("the typed client (hono/client over AppType)", () => {
  it("places an order, pays it and lists the user's orders with request and response types from the routes", async () => {
    const user = await client.api.v1.admin.users.$post({ json: { name: "typed", initialBalance: 50_000 } }, admin);
    const product = await client.api.v1.admin.products.$post({ json: { name: "typed widget", price: 1_500, stock: 10 } }, admin);
    if (user.status !== 201 || product.status !== 201) throw new Error(`setup: ${user.status} ${product.status}`);
    const userId = (await user.json()).data.userId;
    const productId = (await product.json()).data.productId;

    const placed = await client.api.v1.orders.$post({ json: { userId, orderProducts: [{ productId, quantity: 2 }] } });
    expect(placed.status).toBe(201);
    if (placed.status !== 201) return;
    const order = (await placed.json()).data;
    expectTypeOf(order.status).toEqualTypeOf<"NOT_PAID">();
    expectTypeOf(order.totalAmount).toEqualTypeOf<number>();
    expect(order).toMatchObject({ status: "NOT_PAID", itemsAmount: 3_000, totalAmount: 3_000 });

    const paid = await client.api.v1.points.use.$post({ json: { userId, orderId: order.orderId } });
    expect(paid.status).toBe(200);
    if (paid.status !== 200) return;
    const receipt = (await paid.json()).data;
    expectTypeOf(receipt.status).toEqualTypeOf<"PAID">();
    expect(receipt).toEqual({ orderId: order.orderId, status: "PAID", paidAmount: 3_000, balance: 47_000 });

    const listed = await client.api.v1.orders.$get({ query: { userId: String(userId), status: "PAID", limit: "10" } });
    expect(listed.status).toBe(200);
    if (listed.status !== 200) return;
    const page = (await listed.json()).data;
    expectTypeOf(page.items[0]!.status).toEqualTypeOf<"NOT_PAID" | "PAID" | "EXPIRED" | "CANCELLED">();
    expectTypeOf(page.nextCursor).toEqualTypeOf<string | null>();
    expect(page).toEqual({
      userId,
      items: [
        {
          orderId: order.orderId,
          status: "PAID",
          itemsAmount: 3_000,
          discountAmount: 0,
          totalAmount: 3_000,
          createdAt: expect.any(String),
          expiresAt: order.expiresAt,
          paidAt: expect.any(String),
          items: [{ productId, productName: "typed widget", quantity: 2, unitPrice: 1_500 }],
        },
      ],
      nextCursor: null,
    });
  });

  it("types the error answers too, and refuses at compile time what the routes refuse at run time", async () => {
    const missing = await client.api.v1.coupons[":couponId"].$get({ param: { couponId: "9999999" } });
    expect(missing.status).toBe(404);
    if (missing.status === 404) {
      const err = await missing.json();
      expectTypeOf(err.error).toEqualTypeOf<string>();
      expect(err.error).toBe("COUPON_NOT_FOUND");
    }
    // A body the schema refuses does not compile (and the server answers 400 if it is sent anyway).
    // @ts-expect-error orderProducts is required
    const bad = await client.api.v1.orders.$post({ json: { userId: 1 } });
    expect(bad.status).toBe(400);
    // @ts-expect-error status is one of the four public statuses
    const badStatus = await client.api.v1.orders.$get({ query: { userId: "1", status: "PENDING" } });
    expect(badStatus.status).toBe(400);
  });
});
