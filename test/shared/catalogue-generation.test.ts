import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import type { ProductStock } from "../../src/products/product-stock.do";
import { CatalogueGeneration, GENERATION_MEMO_MS, SALE_BUMP_INTERVAL_MS } from "../../src/shared/catalogue-generation";
import { createProduct, createUser } from "../support/http";
import { stockStub } from "../support/orders";

const ORIGIN = "http://example.com";
const STEP_MS = 50;

/**
 * One simulated clock for an app (its edge cache's timers) and a product's stock object (the
 * pace of its D1 projection), starting an hour ahead so no alarm fires by itself: the test
 * moves time, fires the app's due timers and runs the object's alarm, one step at a time.
 */
async function simulatedWorld(productId: number) {
  let now = Math.ceil((Date.now() + 3_600_000) / 5_000) * 5_000 + 100; // early in a 5 s bucket nobody used
  const timers: { at: number; fire: () => void }[] = [];
  await runInDurableObject(stockStub(productId), (obj: ProductStock) => {
    obj.clock = () => now;
  });
  const wait = (ms: number) => new Promise<void>((fire) => timers.push({ at: now + ms, fire }));
  /** An app as one isolate: writes keep their execution context (their deferred work runs on the simulated timers). */
  const isolate = () => {
    const app = createApp({ now: () => now, wait });
    const pending: ExecutionContext[] = [];
    return {
      async stock(): Promise<number> {
        const ctx = createExecutionContext();
        const res = await app.request(`${ORIGIN}/api/v1/products/${productId}`, {}, env, ctx);
        await waitOnExecutionContext(ctx);
        return ((await res.json()) as { data: { stock: number } }).data.stock;
      },
      async post(path: string, body: unknown) {
        const ctx = createExecutionContext();
        pending.push(ctx);
        const res = await app.request(
          `${ORIGIN}${path}`,
          { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
          env,
          ctx,
        );
        return { status: res.status, body: (await res.json()) as { data: { orderId: number } } };
      },
      /** Every write's deferred work, finished (call once no timer is left). */
      settled: () => Promise.all(pending.map((ctx) => waitOnExecutionContext(ctx))),
    };
  };
  return {
    get now() {
      return now;
    },
    isolate,
    timersLeft: () => timers.length,
    /** Time moves one step: the object's alarm runs (its projection, when due), then the app's due timers fire. */
    async step(): Promise<void> {
      now += STEP_MS;
      await runDurableObjectAlarm(stockStub(productId));
      timers.sort((a, b) => a.at - b.at);
      while (timers.length > 0 && timers[0]!.at <= now) timers.shift()!.fire();
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the fired timers' work reach its next wait
    },
  };
}

describe("a sale shows in the catalogue within about a second (the generation bump is deferred, not dropped)", () => {
  it("place, cancel, read GET /products/{id}: each change is current within a second, here and in another isolate of the data centre", async () => {
    const userId = await createUser();
    const p = await createProduct(1_000, 5, "fresh stock");
    const world = await simulatedWorld(p);
    const here = world.isolate();
    expect(await here.stock()).toBe(5);

    /** Steps time until this isolate reads `expected`; how long after `since` that was. */
    const untilCurrent = async (expected: number, since: number) => {
      while ((await here.stock()) !== expected) {
        if (world.now - since > 6_000) throw new Error(`stock never showed ${expected}`);
        await world.step();
      }
      return world.now - since;
    };

    const placedAt = world.now;
    const placed = await here.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 2 }] });
    expect(placed.status).toBe(201);
    expect(await untilCurrent(3, placedAt)).toBeLessThanOrEqual(SALE_BUMP_INTERVAL_MS);

    // The cancel comes right after the read that showed the placement (the bump before it was just spent).
    const cancelledAt = world.now;
    const cancelled = await here.post(`/api/v1/orders/${placed.body.data.orderId}/cancel`, { userId });
    expect(cancelled.status).toBe(200);
    expect(await untilCurrent(5, cancelledAt)).toBeLessThanOrEqual(SALE_BUMP_INTERVAL_MS);

    // The bump reached the data centre's cache: another isolate (its own memo) reads the current stock.
    expect(world.timersLeft()).toBe(0);
    await here.settled();
    expect(await world.isolate().stock()).toBe(5);
  });

  it("a storm of sales writes the generation at most once a second per isolate, and the last sale still shows", async () => {
    const users = await Promise.all(Array.from({ length: 12 }, () => createUser()));
    const p = await createProduct(1_000, 50, "storm");
    const world = await simulatedWorld(p);
    const here = world.isolate();
    const generationNow = async () => (await caches.default.match(`${ORIGIN}/__edge-cache/catalogue-generation`))?.text();
    expect(await here.stock()).toBe(50);
    const start = world.now;
    const generations = new Set<string | undefined>([await generationNow()]);
    for (const userId of users) {
      expect((await here.post("/api/v1/orders", { userId, orderProducts: [{ productId: p, quantity: 1 }] })).status).toBe(201);
      for (let i = 0; i < 2; i++) {
        await world.step();
        generations.add(await generationNow());
      }
    }
    const lastSale = world.now;
    while ((await here.stock()) !== 50 - users.length) {
      expect(world.now - lastSale, "the last sale shows within a second").toBeLessThanOrEqual(SALE_BUMP_INTERVAL_MS);
      await world.step();
    }
    while (world.timersLeft() > 0) await world.step(); // bumps planned for later sales still run
    await here.settled();
    generations.add(await generationNow());
    const bumps = generations.size - 1;
    expect(bumps).toBeGreaterThanOrEqual(2);
    expect(bumps, `${bumps} generation writes in ${world.now - start} ms`).toBeLessThanOrEqual(
      Math.ceil((world.now - start) / SALE_BUMP_INTERVAL_MS),
    );
  });
});

describe("CatalogueGeneration", () => {
  /** A clock and timers the test drives; `cut` makes every timer hang (the runtime cut the request that kept it). */
  function harness(settleMs: number) {
    let now = 1_000_000;
    let cut = false;
    const timers: { at: number; fire: () => void }[] = [];
    const stored: string[] = [];
    const generation = new CatalogueGeneration({
      now: () => now,
      wait: (ms) => new Promise<void>((fire) => (cut ? undefined : timers.push({ at: now + ms, fire }))),
      settleMs,
    });
    const store = async (value: string) => void stored.push(value);
    return {
      now: () => now,
      generation,
      store,
      stored,
      timers,
      cutTimers: (v: boolean) => (cut = v),
      async advance(ms: number) {
        now += ms;
        timers.sort((a, b) => a.at - b.at);
        while (timers.length > 0 && timers[0]!.at <= now) timers.shift()!.fire();
        await new Promise((resolve) => setTimeout(resolve, 0));
      },
    };
  }

  it("bumps an admin write at once and a sale once it has settled; a sale at the same time joins the bump already planned", async () => {
    const h = harness(800);
    await h.generation.changed("admin", h.store);
    expect(h.stored).toHaveLength(1);
    const sale = h.generation.changed("sale", h.store);
    expect(sale).toBeInstanceOf(Promise);
    expect(h.generation.changed("sale", h.store), "the bump planned for the first pays it").toBeUndefined();
    await h.advance(799);
    expect(h.stored).toHaveLength(1);
    await h.advance(1);
    await sale;
    expect(h.stored).toHaveLength(2);
    expect(new Set(h.stored).size).toBe(2);
    // The memo is the new value at once (this isolate reads it without asking the cache).
    expect(await h.generation.read(h.now(), async () => "from the cache")).toBe(h.stored[1]);
  });

  it("re-reads the stored generation once its memo is GENERATION_MEMO_MS old", async () => {
    const h = harness(0);
    let reads = 0;
    const readStored = async () => `v${++reads}`;
    expect(await h.generation.read(0, readStored)).toBe("v1");
    expect(await h.generation.read(GENERATION_MEMO_MS - 1, readStored)).toBe("v1");
    expect(await h.generation.read(GENERATION_MEMO_MS, readStored)).toBe("v2");
  });

  it("a planned bump the runtime cut (it never wakes) does not stick: the next sale that settles after it plans its own", async () => {
    const h = harness(800);
    h.cutTimers(true);
    void h.generation.changed("sale", h.store);
    expect(h.generation.changed("sale", h.store), "settles when the planned bump runs: covered by it").toBeUndefined();
    await h.advance(1_000);
    expect(h.stored, "the cut bump never ran").toHaveLength(0);
    h.cutTimers(false);
    const next = h.generation.changed("sale", h.store);
    expect(next, "settles after the planned bump: plans its own").toBeInstanceOf(Promise);
    await h.advance(799);
    expect(h.stored, "once it has settled (a pace after the cut one), not before").toHaveLength(0);
    await h.advance(1);
    await next;
    expect(h.stored).toHaveLength(1);
  });

  it("plans a storm's bumps a pace apart and runs each in the request that planned it", async () => {
    const h = harness(800);
    const planned: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const bump = h.generation.changed("sale", h.store);
      if (bump) planned.push(bump);
      await h.advance(100);
    }
    expect(planned.length, "4 s of sales: one bump a second at most").toBeLessThanOrEqual(5);
    await h.advance(2 * SALE_BUMP_INTERVAL_MS);
    await Promise.all(planned);
    expect(h.stored).toHaveLength(planned.length);
  });
});
