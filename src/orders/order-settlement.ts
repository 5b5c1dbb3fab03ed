import { pooled } from "../shared/pool";
import type { StockPort } from "../products/product-stock.client";
import type { SubrequestBudget } from "../shared/budget";
import { errorFields, log } from "../shared/logger";
import type { OrderSweepRepo, SweptOrder } from "./order-sweep.repo";

/**
 * At most this many stock-object calls in flight at once during a sweep. Placement
 * already fans out up to 50 (one per order line); a sweep needs no more.
 */
export const FANOUT_CONCURRENCY = 50;

export interface SettlementDeps {
  sweep: OrderSweepRepo;
  stock: StockPort;
  budget: SubrequestBudget;
}

export interface SettlementReport {
  settled: number;
  retried: number;
  /** Left for a later run because this invocation's subrequest budget ran out. */
  deferred: number;
}

type Group = { productId: number; shard: number; sell: number[]; release: number[] };

/**
 * Tells the stock objects about a set of terminal orders, grouped per product
 * shard (the shard each line was reserved on): one `settleMany` call per
 * (product, shard) (PAID orders sold, every other status released; the status
 * decides, so a PAID order is never released), in parallel, then one D1 batch
 * that records `closed_at` for the orders every object took and a backoff for
 * the others. A throwing or refusing object only delays the orders it holds; the
 * rest are settled. Shards beyond the budget are left for the next run (their
 * orders stay unsettled, nothing is lost).
 */
export async function settleSwept(deps: SettlementDeps, orders: SweptOrder[], now: number): Promise<SettlementReport> {
  if (orders.length === 0) return { settled: 0, retried: 0, deferred: 0 };
  const byShard = new Map<string, Group>();
  for (const o of orders) {
    for (const l of o.lines) {
      const key = `${l.productId}/${l.shard}`;
      let g = byShard.get(key);
      if (!g) {
        g = { productId: l.productId, shard: l.shard, sell: [], release: [] };
        byShard.set(key, g);
      }
      (o.status === "PAID" ? g.sell : g.release).push(o.id);
    }
  }
  const groups = [...byShard.values()].sort((a, b) => a.productId - b.productId || a.shard - b.shard);
  // One subrequest per shard called, and one for the D1 batch that records the outcome.
  const affordable = Math.max(0, Math.min(groups.length, deps.budget.left - 1));
  deps.budget.take(affordable);
  const failed = new Set<number>();
  const skipped = new Set<number>();
  for (const g of groups.slice(affordable)) for (const id of idsOf(g)) skipped.add(id);

  const called = groups.slice(0, affordable);
  const results = await pooled(called, FANOUT_CONCURRENCY, (g) => deps.stock.settleMany(g.productId, g.shard, g.sell, g.release));
  results.forEach((r, k) => {
    const g = called[k]!;
    const where = { productId: g.productId, shard: g.shard };
    if (r.status === "rejected") {
      log("error", "stock object unreachable during settlement; backing off", { ...where, ...errorFields(r.reason) });
      for (const id of idsOf(g)) failed.add(id);
    } else if (r.value.refused.length > 0) {
      log("error", "settlement refused by a stock object; backing off", { ...where, refused: r.value.refused.slice(0, 20) });
      for (const x of r.value.refused) failed.add(x.orderId);
    }
  });
  const settled = orders.filter((o) => !failed.has(o.id) && !skipped.has(o.id)).map((o) => o.id);
  const retry = orders.filter((o) => failed.has(o.id) && !skipped.has(o.id)).map((o) => o.id);
  if (deps.budget.take(1)) await deps.sweep.recordSettlement(settled, retry, now);
  return { settled: settled.length, retried: retry.length, deferred: skipped.size };
}

function idsOf(g: { sell: number[]; release: number[] }): number[] {
  return [...g.sell, ...g.release];
}
