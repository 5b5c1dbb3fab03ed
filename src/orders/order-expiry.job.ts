import type { StockPort } from "../products/product-stock.client";
import type { UserCouponCache } from "../coupons/user-coupon.cache";
import { SubrequestBudget } from "../shared/budget";
import { errorFields, log } from "../shared/logger";
import { runRounds, type RoundsReport } from "../shared/rounds";
import type { OrdersRepo } from "./orders.repo";
import type { OrderSweepRepo, SweptOrder } from "./order-sweep.repo";
import { settleSwept } from "./order-settlement";

/**
 * Orders one expiry batch flips (one D1 batch, ids as one JSON parameter). With
 * EXPIRY_MAX_ROUNDS that is 5,000 orders a run: a flash sale's 5,000 orders expiring
 * in the same minute are all EXPIRED, with stock and coupons back, within two runs.
 */
export const EXPIRY_BATCH_SIZE = 500;
/** Batches per sweep per run; each round costs 2 D1 calls + 1 call per product stock shard + 1 D1 batch + 1 Redis call. */
export const EXPIRY_MAX_ROUNDS = 10;
/** A PENDING order older than this was abandoned by its placement (holds time out after 60 s). */
export const STALE_PENDING_MS = 120_000;
/** A terminal order left unsettled this long is settled by the cron (in-flight requests settle their own). */
export const SETTLE_GRACE_MS = 30_000;
/**
 * Subrequests the every-minute order maintenance may spend of the invocation's 1,000
 * (SUBREQUESTS_PER_INVOCATION; paid plan, D1 and DO calls count). The rest is left to the
 * jobs that run after it in the same invocation: the outbox relay makes at most 30 (10 batches x
 * claim, send, mark), the idempotency purge at most 10. CPU: a 500-order
 * round is a few milliseconds of JSON in the Worker, far inside the 30 s default.
 */
export const ORDER_MAINTENANCE_SUBREQUESTS = 800;
/** A round is only started when at least this much budget is left (2 D1 calls + a few objects + the record). */
const MIN_ROUND_SUBREQUESTS = 8;

export interface OrderJobDeps {
  sweep: OrderSweepRepo;
  stock: StockPort;
  /** Evicted when an expired order gives its coupon back. */
  couponCache?: UserCouponCache;
  /** Shared by the sweeps of one run; a fresh ORDER_MAINTENANCE_SUBREQUESTS budget when absent. */
  budget?: SubrequestBudget;
}

export interface OrderJobReport {
  expired: number;
  failed: number;
  settled: number;
  /** Subrequests this run spent (D1 + DO + Redis), never above ORDER_MAINTENANCE_SUBREQUESTS. */
  subrequests: number;
}

type Round = (budget: SubrequestBudget) => Promise<SweptOrder[]>;

/**
 * Runs `round` until it finds fewer than `batchSize` orders, `maxRounds` is reached
 * or the budget is low; each round's orders are settled at once. A failing round is
 * logged and ends this sweep (the next run starts over; every step is idempotent).
 */
async function sweep(
  deps: OrderJobDeps & { budget: SubrequestBudget },
  what: string,
  now: number,
  batchSize: number,
  maxRounds: number,
  round: Round,
) {
  let moved = 0;
  let settled = 0;
  for (let i = 0; i < maxRounds && deps.budget.left >= MIN_ROUND_SUBREQUESTS; i++) {
    try {
      const orders = await round(deps.budget);
      moved += orders.length;
      settled += (await settleSwept(deps, orders, now)).settled;
      if (orders.length < batchSize) break;
    } catch (err) {
      log("error", `${what} failed; the next run retries`, errorFields(err));
      break;
    }
  }
  return { moved, settled };
}

const withBudget = (deps: OrderJobDeps) => ({ ...deps, budget: deps.budget ?? new SubrequestBudget(ORDER_MAINTENANCE_SUBREQUESTS) });

/**
 * Expires NOT_PAID orders past `expires_at` in batches: one D1 batch flips up to
 * `batchSize` of them to EXPIRED with their coupons restored (the conditional flip
 * makes exactly one of expiry, payment and cancel win), then one call per product stock shard
 * releases their stock. Idempotent: a rerun finds nothing, releases are keyed by order.
 */
export async function expireOrders(
  deps: OrderJobDeps,
  now: number,
  batchSize = EXPIRY_BATCH_SIZE,
  maxRounds = EXPIRY_MAX_ROUNDS,
): Promise<number> {
  const d = withBudget(deps);
  const r = await sweep(d, "order expiry", now, batchSize, maxRounds, async (budget) => {
    budget.take(2);
    const orders = await d.sweep.expireDue(now, batchSize);
    const owners = [...new Set(orders.filter((o) => o.userCouponId !== null).map((o) => o.userId))];
    if (d.couponCache && owners.length > 0 && budget.take(1)) await d.couponCache.evict(owners);
    return orders;
  });
  return r.moved;
}

/** Fails placements that died before their commit point, and releases what they held. */
export async function failStalePendingOrders(
  deps: OrderJobDeps,
  now: number,
  batchSize = EXPIRY_BATCH_SIZE,
  maxRounds = EXPIRY_MAX_ROUNDS,
): Promise<number> {
  const d = withBudget(deps);
  const r = await sweep(d, "stale placement cleanup", now, batchSize, maxRounds, async (budget) => {
    budget.take(2);
    return d.sweep.failStalePending(now - STALE_PENDING_MS, now, batchSize);
  });
  return r.moved;
}

/**
 * Finishes the DO side of terminal orders whose request died before telling the
 * objects (or whose objects were down): no age cut-off, and an order that keeps
 * failing backs off (orders.settle_after) so it never blocks the others.
 */
export async function settleUnsettledOrders(
  deps: OrderJobDeps,
  now: number,
  batchSize = EXPIRY_BATCH_SIZE,
  maxRounds = EXPIRY_MAX_ROUNDS,
): Promise<number> {
  const d = withBudget(deps);
  const r = await sweep(d, "order settlement", now, batchSize, maxRounds, async (budget) => {
    budget.take(1);
    return d.sweep.listUnsettled(now, now - SETTLE_GRACE_MS, batchSize);
  });
  return r.settled;
}

/** How long FAILED placement attempts are kept (for diagnosis) before the purge deletes them. */
export const FAILED_RETENTION_MS = 7 * 86_400_000;
/** Attempts one purge round deletes (one D1 batch: their items, then them). */
export const FAILED_PURGE_BATCH = 500;
/**
 * Rounds a purge run may make (of the ten-minute cron invocation's 1,000 subrequests): 20 x 500 =
 * 10,000 attempts a run, 1.44 million a day at 144 runs, far above any day's failed placements.
 */
export const FAILED_PURGE_SUBREQUESTS = 20;
/** No purge round starts this long after the run began (each is a write transaction on the one D1 primary). */
export const FAILED_PURGE_TIME_BUDGET_MS = 5_000;

/** Rows the purge deleted per table, with its rounds and why it stopped. */
export interface FailedPurgeReport extends RoundsReport {
  orders: number;
  items: number;
}

/**
 * Deletes FAILED attempts older than the retention, in rounds of FAILED_PURGE_BATCH while a
 * round finds a full batch, inside FAILED_PURGE_SUBREQUESTS and FAILED_PURGE_TIME_BUDGET_MS.
 */
export async function purgeFailedOrders(
  deps: { repo: OrdersRepo; budget?: SubrequestBudget; clock?: () => number; batchSize?: number },
  now: number,
): Promise<FailedPurgeReport> {
  const clock = deps.clock ?? Date.now;
  const limit = deps.batchSize ?? FAILED_PURGE_BATCH;
  const deleted = { orders: 0, items: 0 };
  const report = await runRounds({
    cost: 1,
    budget: deps.budget ?? new SubrequestBudget(FAILED_PURGE_SUBREQUESTS),
    deadline: clock() + FAILED_PURGE_TIME_BUDGET_MS,
    clock,
    round: async () => {
      const r = await deps.repo.purgeFailed(now - FAILED_RETENTION_MS, limit);
      deleted.orders += r.orders;
      deleted.items += r.items;
      return r.orders >= limit;
    },
  });
  return { ...deleted, ...report };
}

/** The every-minute order maintenance: expire, clean up dead placements, settle leftovers, on one budget. */
export async function runOrderMaintenance(deps: OrderJobDeps, now: number): Promise<OrderJobReport> {
  const d = withBudget(deps);
  const expired = await expireOrders(d, now);
  const failed = await failStalePendingOrders(d, now);
  const settled = await settleUnsettledOrders(d, now);
  return { expired, failed, settled, subrequests: d.budget.spent };
}
