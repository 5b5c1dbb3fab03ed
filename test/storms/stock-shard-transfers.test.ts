import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { ProductStock } from "../../src/products/product-stock.do";
import type { GiveAnswer, GiveRequest, SiblingPort } from "../../src/sharding/transfer";
import { adminHeaders, api, createProduct } from "../support/http";
import { stockStub } from "../support/orders";

let nextOrderId = 5_000_000;
const orderId = () => nextOrderId++;

/** A product of `stock` units raised to two shards: shard 1 is new, so it starts empty and must borrow from shard 0. */
async function twoShards(stock: number): Promise<number> {
  const p = await createProduct(100, stock);
  const res = await api.put(`/api/v1/admin/products/${p}/stock-shards`, { stockShards: 2 }, adminHeaders);
  expect(res.status).toBe(200);
  return p;
}

/** The siblings as the object itself reaches them (plain RPC stubs). */
const realPort = (p: number): SiblingPort => ({
  give: async (s, req) => (await stockStub(p, s).give(p, s, req)) as GiveAnswer,
  acknowledge: async (s, ids) => {
    await stockStub(p, s).acknowledge(p, s, ids);
  },
  push: async (s, push) => {
    await stockStub(p, s).push(p, s, push);
  },
});

const sql = <T extends Record<string, SqlStorageValue>>(p: number, shard: number, query: string) =>
  runInDurableObject(stockStub(p, shard), (_o: ProductStock, state) => state.storage.sql.exec<T>(query).toArray());
const available = async (p: number, shard: number) => (await stockStub(p, shard).snapshot(p, shard))!.available;
const total = async (p: number) => (await available(p, 0)) + (await available(p, 1));

describe("a stock transfer cut off half-way loses and duplicates nothing", () => {
  it("receiver aborted after the giver granted, before applying: its alarm re-sends the transfer and applies the grant once", async () => {
    const p = await twoShards(40);
    const receiver = stockStub(p, 1);
    const quiet = vi.spyOn(console, "error").mockImplementation(() => {});
    // The reservation runs inside the receiver; the giver grants, then the receiver is reset before
    // the transaction that would apply the grant.
    const cutOff = await runInDurableObject(receiver, async (obj: ProductStock, state) => {
      const real = realPort(p);
      obj.siblingPort = {
        give: async (s, req) => {
          await real.give(s, req);
          state.abort("injected: receiver reset before applying the grant");
          throw new Error("unreachable");
        },
        acknowledge: real.acknowledge,
        push: real.push,
      };
      await obj.reserve({ productId: p, orderId: orderId(), quantity: 5, now: Date.now(), confirmed: true, at: { shard: 1, shards: 2 } });
      return "answered";
    }).catch(() => "reset");
    expect(cutOff).toBe("reset");
    quiet.mockRestore();

    // The grant left shard 0 and is not applied at shard 1: in flight, recorded on both sides.
    const [grant] = await sql<{ transfer_id: string; granted: number; acked: number }>(
      p,
      0,
      "SELECT transfer_id, granted, acked FROM transfers_out",
    );
    expect(grant).toMatchObject({ acked: 0 });
    expect(grant!.granted).toBeGreaterThanOrEqual(5);
    expect(await available(p, 0)).toBe(40 - grant!.granted);
    expect(await available(p, 1)).toBe(0);
    expect(await sql(p, 1, "SELECT transfer_id FROM transfers_in")).toEqual([{ transfer_id: grant!.transfer_id }]);

    // The alarm armed before the transfer was sent finishes it: applied once, acknowledged (a reset object needs a new stub).
    const restarted = stockStub(p, 1);
    expect(await runDurableObjectAlarm(restarted)).toBe(true);
    expect(await available(p, 1)).toBe(grant!.granted);
    expect(await total(p)).toBe(40);
    expect(await sql(p, 1, "SELECT transfer_id FROM transfers_in")).toEqual([]);
    expect(await sql(p, 0, "SELECT acked FROM transfers_out")).toEqual([{ acked: 1 }]);

    // Running recovery again, or re-sending the old transfer, changes nothing.
    await runDurableObjectAlarm(restarted);
    expect(await stockStub(p, 0).give(p, 0, { transferId: grant!.transfer_id, receiver: 1, need: 5, extra: 20 })).toMatchObject({
      granted: grant!.granted,
    });
    expect(await total(p)).toBe(40);
    // And the units are usable where they arrived.
    expect(
      await restarted.reserve({
        productId: p,
        orderId: orderId(),
        quantity: 5,
        now: Date.now(),
        confirmed: true,
        at: { shard: 1, shards: 2 },
      }),
    ).toMatchObject({ ok: true, available: grant!.granted - 5 });
    // D1 follows: one row per shard, products.stock their sum.
    for (const shard of [0, 1]) expect(await stockStub(p, shard).flush()).toBe(true);
    const rows = await env.DB.prepare("SELECT shard, available FROM product_stock_shards WHERE product_id = ? ORDER BY shard")
      .bind(p)
      .all();
    expect(rows.results).toEqual([
      { shard: 0, available: 40 - grant!.granted },
      { shard: 1, available: grant!.granted - 5 },
    ]);
    expect(await env.DB.prepare("SELECT stock FROM products WHERE id = ?").bind(p).first("stock")).toBe(35);
  });

  it("giver aborted after committing the grant, before answering: the receiver's alarm re-sends the same id and gets the same grant, once", async () => {
    const p = await twoShards(40);
    const receiver = stockStub(p, 1);
    const sent: GiveRequest[] = [];
    await runInDurableObject(receiver, (obj: ProductStock) => {
      const real = realPort(p);
      obj.siblingPort = {
        give: async (s, req) => {
          sent.push(req);
          if (sent.length > 1) return real.give(s, req);
          // The giver commits the grant, then is reset before its answer leaves.
          await runInDurableObject(stockStub(p, s), async (giver: ProductStock, state) => {
            await giver.give(p, s, req);
            state.abort("injected: giver reset before answering");
          }).catch(() => undefined);
          throw new Error("Network connection lost.");
        },
        acknowledge: real.acknowledge,
        push: real.push,
      };
    });
    const quiet = vi.spyOn(console, "error").mockImplementation(() => {});
    const r = await receiver.reserve({
      productId: p,
      orderId: orderId(),
      quantity: 5,
      now: Date.now(),
      confirmed: true,
      at: { shard: 1, shards: 2 },
    });
    quiet.mockRestore();
    expect(r).toMatchObject({ ok: true, reservation: { quantity: 5, status: "confirmed" } });
    // The next claim had an id of its own; the lost one stays open until the receiver's alarm re-sends it under
    // its id, and the giver answers its recorded grant (applied once).
    expect(sent.length).toBe(2);
    expect(sent[1]!.transferId).not.toBe(sent[0]!.transferId);
    await runDurableObjectAlarm(receiver);
    expect(sent.filter((q) => q.transferId === sent[0]!.transferId)).toHaveLength(2);
    expect(await sql(p, 1, "SELECT transfer_id FROM transfers_in")).toEqual([]);
    const out = await sql<{ transfer_id: string; granted: number }>(p, 0, "SELECT transfer_id, granted FROM transfers_out");
    expect(out).toHaveLength(2);
    const granted = out[0]!.granted + out[1]!.granted;
    expect(await available(p, 0)).toBe(40 - granted);
    expect(await available(p, 1)).toBe(granted - 5);
    expect((await total(p)) + 5).toBe(40);
  });

  it("grants once for a repeated transfer id, and never more than the giver holds", async () => {
    const p = await twoShards(10);
    const giver = stockStub(p, 0);
    const req = { transferId: "1:900", receiver: 1, need: 3, extra: 100 };
    const first = await giver.give(p, 0, req);
    expect(first.granted).toBe(3); // the need; no batch: shard 0 holds too little to hand every shard one
    const again = await giver.give(p, 0, req);
    expect(again.granted).toBe(first.granted);
    expect(await available(p, 0)).toBe(10 - first.granted);
    // More than is left anywhere: nothing, and shard 0 says so (it gathered from shard 1, which holds none).
    expect(await giver.give(p, 0, { ...req, transferId: "1:901", need: 50 })).toMatchObject({ granted: 0, dry: true });
    expect((await giver.give(p, 0, { ...req, transferId: "1:902", need: 7 })).granted).toBe(7);
    expect(await available(p, 0)).toBe(0);
  });
});
