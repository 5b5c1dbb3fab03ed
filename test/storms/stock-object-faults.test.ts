import { abortAllDurableObjects, evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { runOrderMaintenance } from "../../src/orders/order-expiry.job";
import { OrderSweepRepo } from "../../src/orders/order-sweep.repo";
import { DurableObjectStock } from "../../src/products/product-stock.client";
import { createProduct, createUser } from "../support/http";
import { assertStockConservation } from "../support/invariants";
import { placeOrder, stockStub } from "../support/orders";

/** One placement per user; `reached` resolves once `k` have answered (the object is busy, the rest in flight). */
function storm(userIds: number[], productId: number, k: number) {
  let done = 0;
  let signal!: () => void;
  const reached = new Promise<void>((r) => (signal = r));
  const all = Promise.all(
    userIds.map(async (u) => {
      const res = await placeOrder(u, [[productId, 1]]);
      if (++done === k) signal();
      return res;
    }),
  );
  return { reached, all };
}

/** After a fault: the crons (ahead of the stale-placement and settle ages) finish whatever was cut off. */
async function cronsCatchUp() {
  await runOrderMaintenance(
    { sweep: new OrderSweepRepo(env.DB), stock: new DurableObjectStock(env.PRODUCT_STOCK) },
    Date.now() + 10 * 60_000,
  );
}

async function users(n: number) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await createUser());
  return out;
}

describe("ProductStock evicted or aborted mid-storm", () => {
  for (const fault of ["evicted", "aborted"] as const) {
    it(`keeps stock exact when the object is ${fault} in the middle of 40 placements on 25 units`, async () => {
      const p = await createProduct(100, 25);
      const ids = await users(40);
      const quiet = vi.spyOn(console, "error").mockImplementation(() => {});
      const wave = storm(ids, p, 8);
      await wave.reached;
      if (fault === "evicted") await evictDurableObject(stockStub(p));
      else await abortAllDurableObjects();
      const first = await wave.all;
      // Clients retry what was cut off (5xx), once.
      const retried = await Promise.all(ids.map((u, i) => (first[i]!.status >= 500 ? placeOrder(u, [[p, 1]]) : first[i]!)));
      quiet.mockRestore();
      for (const r of retried) expect([201, 409, 503]).toContain(r.status);
      const placed = retried.filter((r) => r.status === 201).length;
      expect(placed).toBeLessThanOrEqual(25);
      await cronsCatchUp();
      await assertStockConservation([p], 25);
    });
  }
});

describe("ProductStock projection", () => {
  it("retries a failed projection write until products.stock equals the object", async () => {
    const userId = await createUser();
    const p = await createProduct(100, 9);
    const trigger = `fail_projection_${p}`;
    await env.DB.prepare(
      `CREATE TRIGGER ${trigger} BEFORE UPDATE OF stock ON products WHEN NEW.id = ${p} BEGIN SELECT RAISE(ABORT, 'injected projection failure'); END`,
    ).run();
    expect((await placeOrder(userId, [[p, 4]])).status).toBe(201);
    const stub = stockStub(p);
    expect(await stub.flush()).toBe(false); // D1 refused the write ...
    await runDurableObjectAlarm(stub); // ... and the alarm's retry too, re-armed
    expect(await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(p).first("stock")).toBe(9);
    await env.DB.prepare(`DROP TRIGGER ${trigger}`).run();
    expect(await runDurableObjectAlarm(stub)).toBe(true); // the alarm was still armed: it writes the value now
    expect(await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(p).first("stock")).toBe(5);
    await assertStockConservation([p], 9);
  });
});
