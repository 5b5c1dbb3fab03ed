import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { d1CostOf } from "../../src/shared/hops";
import { encodeCursor } from "../../src/shared/cursor";
import { api, createProduct, createUser, errorCode, type ApiResponse } from "../support/http";
import { backdateExpiry, cancelOrder, payOrder, placedOrderId } from "../support/orders";
import { bearer, JWT_SECRET, testApp, tokenFor } from "../support/secure-app";

const rowsRead = (res: ApiResponse) => d1CostOf(res.headers.get("server-timing")).rowsRead;
const list = (query: string) => api.get(`/api/v1/orders?${query}`);

/**
 * Gives `userId` `count` orders straight in D1 (the route under test only reads), oldest first, each with
 * one line of `productId` (quantity 1..3). `status` picks each order's stored status; NOT_PAID orders are
 * unexpired unless `expiresAt` says otherwise. Returns the ids, oldest first.
 */
async function seedOrders(
  userId: number,
  productId: number,
  count: number,
  status: (i: number) => string = () => "PAID",
  expiresAt: (i: number) => number = () => Date.now() + 600_000,
): Promise<number[]> {
  const ids: number[] = [];
  for (let start = 0; start < count; start += 50) {
    const stmts: D1PreparedStatement[] = [];
    for (let i = start; i < Math.min(count, start + 50); i++) {
      const s = status(i);
      const q = (i % 3) + 1;
      const at = Date.now() - (count - i) * 1_000;
      stmts.push(
        env.DB.prepare(
          `INSERT INTO orders (user_id, status, items_amount, discount_amount, total_amount, created_at, updated_at, expires_at, paid_at, closed_at)
           VALUES (?1, ?2, ?3, 0, ?3, ?4, ?4, ?5, ?6, ?4) RETURNING id`,
        ).bind(userId, s, 100 * q, at, expiresAt(i), s === "PAID" ? at : null),
        env.DB.prepare(
          "INSERT INTO order_items (order_id, product_id, quantity, unit_price, amount) VALUES ((SELECT max(id) FROM orders WHERE user_id = ?1), ?2, ?3, 100, ?4)",
        ).bind(userId, productId, q, 100 * q),
      );
    }
    const results = await env.DB.batch(stmts);
    for (let k = 0; k < results.length; k += 2) ids.push((results[k]!.results[0] as { id: number }).id);
  }
  return ids;
}

/** Every page of `query` from the first, following nextCursor; the orders' ids in the order served. */
async function allPages(query: string): Promise<{ pages: ApiResponse[]; ids: number[] }> {
  const pages: ApiResponse[] = [];
  let cursor: string | null = null;
  do {
    const res = await list(`${query}${cursor ? `&cursor=${cursor}` : ""}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    pages.push(res);
    cursor = res.body.data.nextCursor;
  } while (cursor && pages.length < 20);
  return { pages, ids: pages.flatMap((p) => p.body.data.items.map((o: { orderId: number }) => o.orderId)) };
}

describe("GET /api/v1/orders (my orders)", () => {
  it("pages through a user's 250 orders with limit=100 in exactly three pages, newest first, nothing repeated or skipped", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 10, "widget");
    const ids = await seedOrders(userId, p, 250);
    const { pages, ids: served } = await allPages(`userId=${userId}&limit=100`);
    expect(pages.map((r) => r.body.data.items.length)).toEqual([100, 100, 50]);
    expect(pages.map((r) => r.body.data.nextCursor === null)).toEqual([false, false, true]);
    expect(served).toEqual([...ids].reverse());
    expect(new Set(served).size).toBe(250);
    const first = pages[0]!.body.data;
    expect(first.userId).toBe(userId);
    expect(first.items[0]).toEqual({
      orderId: ids[249],
      status: "PAID",
      itemsAmount: 100 * ((249 % 3) + 1),
      discountAmount: 0,
      totalAmount: 100 * ((249 % 3) + 1),
      createdAt: expect.any(String),
      expiresAt: expect.any(String),
      paidAt: first.items[0].createdAt,
      items: [{ productId: p, productName: "widget", quantity: (249 % 3) + 1, unitPrice: 100 }],
    });
  });

  it("answers an order placed, paid and cancelled through the API with its lines, amounts and the product names", async () => {
    const userId = await createUser(100_000);
    const a = await createProduct(1_200, 10, "apple");
    const b = await createProduct(700, 10, "banana");
    const paid = await placedOrderId(userId, [
      [b, 2],
      [a, 1],
    ]);
    expect((await payOrder(userId, paid)).status).toBe(200);
    const cancelled = await placedOrderId(userId, [[a, 3]]);
    expect((await cancelOrder(userId, cancelled)).status).toBe(200);
    const open = await placedOrderId(userId, [[b, 1]]);
    const res = await list(`userId=${userId}`);
    expect(res.status).toBe(200);
    const items = res.body.data.items;
    expect(items.map((o: { orderId: number; status: string }) => [o.orderId, o.status])).toEqual([
      [open, "NOT_PAID"],
      [cancelled, "CANCELLED"],
      [paid, "PAID"],
    ]);
    expect(items[2]).toMatchObject({ itemsAmount: 2_600, discountAmount: 0, totalAmount: 2_600, paidAt: expect.any(String) });
    expect(items[2].items).toEqual([
      { productId: a, productName: "apple", quantity: 1, unitPrice: 1_200 },
      { productId: b, productName: "banana", quantity: 2, unitPrice: 700 },
    ]);
    expect(items[0].paidAt).toBeNull();
    expect(res.body.data.nextCursor).toBeNull();
    expect(res.headers.get("cache-control")).toBe("private, no-store");
  });

  it("filters by the status the client sees: an unpaid order past its deadline is EXPIRED before the sweep runs", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 10);
    const statuses = ["PAID", "NOT_PAID", "EXPIRED", "CANCELLED", "NOT_PAID", "PAID", "EXPIRED", "NOT_PAID"];
    // Orders 1 and 4 are NOT_PAID past their deadline (not swept yet); order 7 is NOT_PAID and still payable.
    const ids = await seedOrders(
      userId,
      p,
      statuses.length,
      (i) => statuses[i]!,
      (i) => (i === 1 || i === 4 ? Date.now() - 1_000 : Date.now() + 600_000),
    );
    const want = (pick: (i: number) => boolean) => ids.filter((_, i) => pick(i)).reverse();
    const served = async (status: string, limit = 20) => (await allPages(`userId=${userId}&status=${status}&limit=${limit}`)).ids;
    expect(await served("PAID")).toEqual(want((i) => statuses[i] === "PAID"));
    expect(await served("CANCELLED")).toEqual(want((i) => statuses[i] === "CANCELLED"));
    expect(await served("NOT_PAID")).toEqual([ids[7]]);
    expect(await served("EXPIRED")).toEqual(want((i) => statuses[i] === "EXPIRED" || i === 1 || i === 4));
    // The two arms of EXPIRED merge across pages too: one at a time, nothing repeated or skipped.
    expect(await served("EXPIRED", 1)).toEqual(want((i) => statuses[i] === "EXPIRED" || i === 1 || i === 4));
    const all = await list(`userId=${userId}`);
    expect(all.body.data.items.map((o: { status: string }) => o.status)).toEqual([
      "NOT_PAID",
      "EXPIRED",
      "PAID",
      "EXPIRED",
      "CANCELLED",
      "EXPIRED",
      "EXPIRED",
      "PAID",
    ]);
  });

  it("never shows PENDING or FAILED placement attempts, nor another user's orders", async () => {
    const userId = await createUser();
    const other = await createUser();
    const p = await createProduct(100, 10);
    const statuses = ["PAID", "PENDING", "FAILED", "CANCELLED", "FAILED", "PENDING"];
    const ids = await seedOrders(userId, p, statuses.length, (i) => statuses[i]!);
    const theirs = await seedOrders(other, p, 3);
    const mine = (await allPages(`userId=${userId}&limit=1`)).ids;
    expect(mine).toEqual([ids[3], ids[0]]);
    expect((await allPages(`userId=${other}`)).ids).toEqual([...theirs].reverse());
    const lonely = await createUser();
    const empty = await list(`userId=${lonely}`);
    expect(empty.body.data).toEqual({ userId: lonely, items: [], nextCursor: null });
  });

  it("answers 400 for a bad limit, cursor or status and 404 for an unknown user", async () => {
    const userId = await createUser();
    for (const q of [
      "limit=0",
      "limit=101",
      "limit=abc",
      "limit=-1",
      "status=PENDING",
      "status=FAILED",
      "status=paid",
      "cursor=nope",
      `cursor=${encodeCursor(5, "uc")}`,
      `cursor=${encodeCursor(5)}`,
      "extra=1",
    ]) {
      const res = await list(`userId=${userId}&${q}`);
      expect(res.status, q).toBe(400);
      expect(errorCode(res), q).toBe("VALIDATION_FAILED");
    }
    expect(errorCode(await list("userId=0"))).toBe("INVALID_USER_ID");
    expect(errorCode(await list(""))).toBe("VALIDATION_FAILED");
    expect(errorCode(await list("userId=9999999"))).toBe("USER_NOT_FOUND");
  });

  it("reads a bounded number of D1 rows per page, whatever the user's older history (one D1 round trip)", async () => {
    const p = await createProduct(100, 10);
    const small = await createUser();
    await seedOrders(small, p, 10);
    const big = await createUser();
    await seedOrders(big, p, 250, (i) => (i % 5 === 0 ? "CANCELLED" : "PAID"));
    const smallFirst = await list(`userId=${small}&limit=10`);
    const bigFirst = await list(`userId=${big}&limit=10`);
    const bigPaid = await list(`userId=${big}&limit=10&status=PAID`);
    const bigCancelled = await list(`userId=${big}&limit=10&status=CANCELLED`);
    const bigExpired = await list(`userId=${big}&limit=10&status=EXPIRED`);
    const bigLater = await list(`userId=${big}&limit=10&cursor=${(await list(`userId=${big}&limit=100`)).body.data.nextCursor}`);
    for (const res of [smallFirst, bigFirst, bigPaid, bigCancelled, bigLater]) expect(res.body.data.items).toHaveLength(10);
    for (const res of [smallFirst, bigFirst, bigPaid, bigCancelled, bigExpired, bigLater]) {
      expect(d1CostOf(res.headers.get("server-timing")).calls).toBe(1);
    }
    // Measured: 72 rows for a 10-order page (the user, the page's index range and rows, its ids again for the
    // lines, the lines and their products): the same for 10 orders or 250, on either index, on page 1 or page 11.
    expect(rowsRead(smallFirst)).toBeLessThanOrEqual(8 * 10);
    for (const res of [bigFirst, bigPaid, bigCancelled, bigLater]) expect(rowsRead(res)).toBe(rowsRead(smallFirst));
    // No EXPIRED orders at all: the two arms of that filter find empty ranges, not the user's 250 orders.
    expect(rowsRead(bigExpired)).toBeLessThanOrEqual(12);
    expect(bigExpired.body.data.items).toEqual([]);
  });

  it("under JWT_SECRET, lists only the token's own orders (403 for another user's, 401 without a token)", async () => {
    const userId = await createUser();
    const other = await createUser();
    const app = testApp({ JWT_SECRET });
    expect((await app.get(`/api/v1/orders?userId=${userId}`)).status).toBe(401);
    expect((await app.get(`/api/v1/orders?userId=${other}`, bearer(await tokenFor(userId)))).status).toBe(403);
    const mine = await app.get(`/api/v1/orders?userId=${userId}`, bearer(await tokenFor(userId)));
    expect(mine.status).toBe(200);
    expect(mine.body.data.userId).toBe(userId);
  });

  it("shows an order placed with an expired deadline as EXPIRED before and after the sweep", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 10);
    const id = await placedOrderId(userId, [[p, 1]]);
    await backdateExpiry(id);
    const res = await list(`userId=${userId}&status=EXPIRED`);
    expect(res.body.data.items.map((o: { orderId: number }) => o.orderId)).toEqual([id]);
    expect((await list(`userId=${userId}&status=NOT_PAID`)).body.data.items).toEqual([]);
  });
});
