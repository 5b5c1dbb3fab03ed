import type { StockPort } from "../products/product-stock.client";
import type { UserCouponCache } from "../coupons/user-coupon.cache";
import { errorFields, log } from "../shared/logger";
import type { OrdersRepo } from "./orders.repo";

/** Orders handled per job run; the next minute picks up the rest. */
export const EXPIRY_BATCH_SIZE = 100;
/** A PENDING order older than this was abandoned by its placement (holds time out after 60 s). */
export const STALE_PENDING_MS = 120_000;
/** A terminal order left unsettled this long is settled by the cron (in-flight requests settle their own). */
export const SETTLE_GRACE_MS = 30_000;
/** How far back the settle sweep looks (by payment deadline); older leftovers need an operator. */
export const SETTLE_HORIZON_MS = 86_400_000;

export interface OrderJobDeps {
  repo: OrdersRepo;
  stock: StockPort;
  /** Evicted when an expired order gives its coupon back. */
  couponCache?: UserCouponCache;
}

export interface OrderJobReport {
  expired: number;
  failed: number;
  settled: number;
}

/**
 * Expires NOT_PAID orders past `expires_at`: the conditional flip to EXPIRED
 * (with the coupon given back, same batch) makes exactly one of expiry,
 * payment and cancel win; then the stock is released in the DOs. Idempotent:
 * a second run finds nothing, and releases are keyed by order id.
 */
export async function expireOrders(deps: OrderJobDeps, now: number, limit = EXPIRY_BATCH_SIZE): Promise<number> {
  let expired = 0;
  for (const orderId of await deps.repo.listExpirable(now, limit)) {
    try {
      if (await deps.repo.closeUnpaid(orderId, "EXPIRED", now, { expiredBy: now })) {
        expired++;
        const order = deps.couponCache ? await deps.repo.findOrder(orderId) : undefined;
        if (order && order.userCouponId !== null) await deps.couponCache!.evict([order.userId]);
        await settleOrder(deps, orderId, "EXPIRED", now);
      }
    } catch (err) {
      log("error", "order expiry failed", { orderId, ...errorFields(err) });
    }
  }
  return expired;
}

/** Fails placements that died before their commit point, and releases what they held. */
export async function failStalePendingOrders(deps: OrderJobDeps, now: number, limit = EXPIRY_BATCH_SIZE): Promise<number> {
  let failed = 0;
  for (const orderId of await deps.repo.listStalePending(now - STALE_PENDING_MS, limit)) {
    try {
      if (await deps.repo.markFailed(orderId, now)) {
        failed++;
        await settleOrder(deps, orderId, "FAILED", now);
      }
    } catch (err) {
      log("error", "stale placement cleanup failed", { orderId, ...errorFields(err) });
    }
  }
  return failed;
}

/** Finishes the DO side of terminal orders whose request died before telling the DOs. */
export async function settleUnsettledOrders(deps: OrderJobDeps, now: number, limit = EXPIRY_BATCH_SIZE): Promise<number> {
  let settled = 0;
  for (const o of await deps.repo.listUnsettled(now - SETTLE_GRACE_MS, now - SETTLE_HORIZON_MS, limit)) {
    try {
      if (await settleOrder(deps, o.id, o.status, now)) settled++;
    } catch (err) {
      log("error", "order settlement failed", { orderId: o.id, ...errorFields(err) });
    }
  }
  return settled;
}

/** Sells (PAID) or releases (otherwise) every line in its DO, then marks the order settled. */
async function settleOrder(deps: OrderJobDeps, orderId: number, status: string, now: number): Promise<boolean> {
  const items = await deps.repo.findItems(orderId);
  const results = await Promise.all(
    items.map((i) => (status === "PAID" ? deps.stock.sell(i.productId, orderId) : deps.stock.release(i.productId, orderId))),
  );
  if (!results.every((r) => r.ok)) {
    log("error", "order settlement refused by a stock DO", { orderId, status, results });
    return false;
  }
  await deps.repo.markSettled(orderId, now);
  return true;
}

/** The every-minute order maintenance: expire, clean up dead placements, settle leftovers. */
/** How long FAILED placement attempts are kept (for diagnosis) before the purge deletes them. */
export const FAILED_RETENTION_MS = 7 * 86_400_000;
const PURGE_BATCH_SIZE = 500;

/** Deletes FAILED attempts older than the retention, in one bounded batch per run. */
export async function purgeFailedOrders(deps: Pick<OrderJobDeps, "repo">, now: number): Promise<number> {
  return deps.repo.purgeFailed(now - FAILED_RETENTION_MS, PURGE_BATCH_SIZE);
}

export async function runOrderMaintenance(deps: OrderJobDeps, now: number): Promise<OrderJobReport> {
  const expired = await expireOrders(deps, now);
  const failed = await failStalePendingOrders(deps, now);
  const settled = await settleUnsettledOrders(deps, now);
  return { expired, failed, settled };
}
