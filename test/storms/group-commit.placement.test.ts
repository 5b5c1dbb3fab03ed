import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createCoupon, createProduct, createUser, errorCode } from "../support/http";
import { failingSessionBatches, inOneBatch, meteredWrites } from "../support/groups";
import { assertStockConservation } from "../support/invariants";
import { createUserCoupon, orderRow, userCouponRow } from "../support/orders";
import { testApp } from "../support/secure-app";

/**
 * Placement group-committed (issue 18): the attempt batch (validate, record PENDING with
 * lines) and the commit batch (PENDING -> NOT_PAID, coupon, key) of concurrent placements
 * in one isolate share D1 batches. Each placement's rows are conditional on its own
 * insert or flip, so a refused placement leaves its neighbours (even the same user's) whole.
 */
const ORDERS = "/api/v1/orders";
const app = testApp({}, { shareWriteBatches: true });
type Line = [productId: number, quantity: number];
const place =
  (
    userId: number,
    lines: Line[],
    opts: { userCouponId?: number; headers?: Record<string, string>; on?: ReturnType<typeof testApp> } = {},
  ) =>
  () =>
    (opts.on ?? app).post(
      ORDERS,
      {
        userId,
        ...(opts.userCouponId !== undefined ? { userCouponId: opts.userCouponId } : {}),
        orderProducts: lines.map(([productId, quantity]) => ({ productId, quantity })),
      },
      opts.headers,
    );

async function linesOf(orderId: number) {
  const rows = await env.DB.prepare("SELECT product_id AS p, quantity AS q FROM order_items WHERE order_id = ? ORDER BY product_id")
    .bind(orderId)
    .all<{ p: number; q: number }>();
  return rows.results.map((r) => [r.p, r.q]);
}
const ordersOf = (userId: number) =>
  env.DB.prepare("SELECT id, status FROM orders WHERE user_id = ? ORDER BY id")
    .bind(userId)
    .all<{ id: number; status: string }>()
    .then((r) => r.results);

describe("placements share D1 batches", () => {
  it("one user's 6 placements in one attempt batch each get their own order and lines", async () => {
    const userId = await createUser(0);
    const [p, q] = [await createProduct(100, 100), await createProduct(300, 100)];
    const { lead, group, batches } = await inOneBatch({
      kind: "orders.place.attempt",
      lead: place(userId, [[p, 1]]),
      group: [1, 2, 3, 4, 5].map((n) =>
        place(userId, [
          [p, n],
          [q, n + 10],
        ]),
      ),
    });
    expect(batches).toBe(2);
    expect([lead, ...group].map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(await linesOf(lead.body.data.orderId)).toEqual([[p, 1]]);
    for (const [i, r] of group.entries()) {
      const n = i + 1;
      expect(await linesOf(r.body.data.orderId)).toEqual([
        [p, n],
        [q, n + 10],
      ]);
      expect(r.body.data).toMatchObject({
        status: "NOT_PAID",
        itemsAmount: n * 100 + (n + 10) * 300,
        totalAmount: n * 100 + (n + 10) * 300,
      });
    }
    expect((await ordersOf(userId)).map((o) => o.status)).toEqual(Array(6).fill("NOT_PAID"));
    await assertStockConservation([p, q], 100);
  });

  it("20 users' placements share the commit batch: 20 orders NOT_PAID, one write transaction per batch", async () => {
    const p = await createProduct(1_000, 100);
    const users = await Promise.all(Array.from({ length: 20 }, () => createUser(0)));
    const { lead, group, batches } = await inOneBatch({
      kind: "orders.place.commit",
      lead: place(users[0]!, [[p, 1]]),
      group: users.slice(1).map((u) => place(u, [[p, 2]])),
    });
    expect(batches).toBe(2);
    expect([lead, ...group].map((r) => r.status)).toEqual(Array(20).fill(201));
    for (const r of group) expect((await orderRow(r.body.data.orderId))!.status).toBe("NOT_PAID");
    // Every answer's meter: the batches each request sent, however the attempt batches were shared.
    const metered = meteredWrites([lead, ...group]);
    expect(metered.sizes.filter((s) => s === 19)).toHaveLength(19);
    expect(metered.writeTx).toBe(metered.sent);
    await assertStockConservation([p], 100);
  });

  it("sold-out refusals share one write that fails and closes them: nothing is left for the cron to settle", async () => {
    const p = await createProduct(100, 0);
    const users = await Promise.all(Array.from({ length: 8 }, () => createUser(0)));
    const { lead, group, batches } = await inOneBatch({
      kind: "orders.fail",
      lead: place(users[0]!, [[p, 1]]),
      group: users.slice(1).map((u) => place(u, [[p, 1]])),
    });
    expect(batches).toBe(2);
    expect([lead, ...group].map((r) => errorCode(r))).toEqual(Array(8).fill("INSUFFICIENT_STOCK"));
    for (const u of users) {
      const orders = await env.DB.prepare("SELECT status, closed_at AS closedAt FROM orders WHERE user_id = ?")
        .bind(u)
        .all<{ status: string; closedAt: number | null }>();
      expect(orders.results).toEqual([{ status: "FAILED", closedAt: expect.any(Number) }]);
    }
    await assertStockConservation([p], 0);
  });

  it("refused attempts in the middle of a batch write nothing and leave neighbours placed (even the same user's)", async () => {
    const [a, b] = [await createUser(0), await createUser(0)];
    const p = await createProduct(500, 50);
    const theirs = await createUserCoupon(b, await createCoupon({ discountType: "AMOUNT", discountValue: 100 }));
    const mine = await createUserCoupon(a, await createCoupon({ discountType: "RATE", discountValue: 10 }));
    const { group, split } = await inOneBatch({
      kind: "orders.place.attempt",
      lead: place(b, [[p, 1]]),
      group: [
        place(a, [[p, 1]]),
        place(a, [
          [p, 1],
          [987_321, 1],
        ]),
        place(a, [[p, 2]], { userCouponId: theirs }),
        place(a, [[p, 4]], { userCouponId: mine }),
        place(987_654, [[p, 1]]),
      ],
    });
    expect(split).toBe(0);
    expect(group.map((r) => (r.status === 201 ? 201 : errorCode(r)))).toEqual([
      201,
      "PRODUCT_NOT_FOUND",
      "COUPON_NOT_OWNED",
      201,
      "USER_NOT_FOUND",
    ]);
    expect(await linesOf(group[0]!.body.data.orderId)).toEqual([[p, 1]]);
    expect(await linesOf(group[3]!.body.data.orderId)).toEqual([[p, 4]]);
    expect(group[3]!.body.data).toMatchObject({ itemsAmount: 2_000, discountAmount: 200, totalAmount: 1_800 });
    // No row for a refused attempt: a's orders are exactly the two placed.
    expect((await ordersOf(a)).map((o) => o.id)).toEqual([group[0]!.body.data.orderId, group[3]!.body.data.orderId]);
    expect(await userCouponRow(theirs)).toEqual({ used_at: null, order_id: null });
    await assertStockConservation([p], 50);
  });

  it("one coupon in two placements of one commit batch: one order gets it, the other is refused and its stock released", async () => {
    const userId = await createUser(0);
    const p = await createProduct(1_000, 10);
    const uc = await createUserCoupon(userId, await createCoupon({ discountType: "AMOUNT", discountValue: 300 }));
    const { group, split } = await inOneBatch({
      kind: "orders.place.commit",
      lead: place(await createUser(0), [[p, 1]]),
      group: [place(userId, [[p, 2]], { userCouponId: uc }), place(userId, [[p, 3]], { userCouponId: uc })],
    });
    expect(split).toBe(0);
    const won = group.filter((r) => r.status === 201);
    expect(won).toHaveLength(1);
    expect(errorCode(group.find((r) => r.status !== 201)!)).toBe("COUPON_ALREADY_USED");
    expect(await userCouponRow(uc)).toEqual({ used_at: expect.any(Number), order_id: won[0]!.body.data.orderId });
    expect((await ordersOf(userId)).map((o) => o.status).sort()).toEqual(["FAILED", "NOT_PAID"]);
    await assertStockConservation([p], 10);
  });

  it("Idempotency-Key twins sharing both batches place one order; the others replay it and give their stock back", async () => {
    const userId = await createUser(0);
    const p = await createProduct(1_000, 20);
    const { group } = await inOneBatch({
      kind: "orders.place.attempt",
      lead: place(await createUser(0), [[p, 1]]),
      group: Array.from({ length: 5 }, () => place(userId, [[p, 2]], { headers: { "idempotency-key": "place-twin" } })),
    });
    expect(group.map((r) => r.status)).toEqual(Array(5).fill(201));
    for (const r of group) expect(r.body).toEqual(group[0]!.body);
    expect(group.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(4);
    const rows = await ordersOf(userId);
    expect(rows.filter((o) => o.status === "NOT_PAID").map((o) => o.id)).toEqual([group[0]!.body.data.orderId]);
    await assertStockConservation([p], 20);
  });
});

describe("a shared commit batch that D1 fails as a whole", () => {
  for (const applied of [false, true]) {
    it(`${applied ? "landed, answer lost: each placement is read back and answered 201" : "never landed: each placement is answered 503 and its stock released"}`, async () => {
      const p = await createProduct(1_000, 30);
      const users = await Promise.all(Array.from({ length: 5 }, () => createUser(0)));
      // A batch committing two or more placements fails once: before it is applied, or after.
      let failed = false;
      const commits = (statements: D1PreparedStatement[]) =>
        statements.filter((st) => (st as unknown as { statement: string }).statement.includes("SET status = 'NOT_PAID'")).length;
      const DB = failingSessionBatches((statements) => {
        if (failed || commits(statements) < 2) return false;
        failed = true;
        return true;
      }, applied);
      const on = testApp({ DB } as unknown as Record<string, string>, { shareWriteBatches: true });
      const { lead, group, batches } = await inOneBatch({
        binding: DB,
        kind: "orders.place.commit",
        lead: place(users[0]!, [[p, 1]], { on }),
        group: users.slice(1).map((u) => place(u, [[p, 2]], { on })),
      });
      expect(batches).toBe(2);
      expect(lead.status).toBe(201);
      for (const [i, r] of group.entries()) {
        const rows = await ordersOf(users[i + 1]!);
        if (applied) {
          expect(r.status).toBe(201);
          expect(rows).toEqual([{ id: r.body.data.orderId, status: "NOT_PAID" }]);
        } else {
          expect([r.status, r.headers.get("retry-after")]).toEqual([503, "1"]);
          expect(rows.map((o) => o.status)).toEqual(["FAILED"]);
        }
      }
      await assertStockConservation([p], 30);
    });
  }
});
