import type { StockPort } from "../products/product-stock.client";
import { toIso, toIsoOrNull } from "../shared/clock";
import { AppError } from "../shared/errors";
import { noUserCouponCache, type UserCouponCache } from "../coupons/user-coupon.cache";
import { errorFields, log } from "../shared/logger";
import { couponUsability, effectiveStatus, isPublicStatus, orderAmounts, type PublicOrderStatus } from "./order.rules";
import type { OrderItemRow, OrderRow, OrdersRepo } from "./orders.repo";

export interface PlaceOrderInput {
  userId: number;
  userCouponId?: number;
  orderProducts: { productId: number; quantity: number }[];
}

export interface PlacedOrder {
  orderId: number;
  status: "NOT_PAID";
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
  expiresAt: string;
}

export interface OrderView {
  orderId: number;
  userId: number;
  status: PublicOrderStatus;
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
  userCouponId: number | null;
  createdAt: string;
  expiresAt: string;
  paidAt: string | null;
  items: OrderItemRow[];
}

/**
 * Order placement (a saga over D1 and the ProductStock DOs), reading and cancel.
 *
 * Placement: (a) insert the order PENDING with its items to get the id;
 * (b) reserve each product in ascending id order, keyed by the order id, and
 * confirm the holds; (c) one D1 batch uses the coupon and moves the order to
 * NOT_PAID (the commit point). Any failure before (c) commits releases what
 * was reserved and marks the order FAILED. If the Worker dies half-way, the
 * holds time out in the DOs and the stale-PENDING job fails the order and
 * releases confirmed reservations, so nothing is stranded.
 */
export class OrdersService {
  constructor(
    private readonly repo: OrdersRepo,
    private readonly stock: StockPort,
    private readonly clock: () => number,
    private readonly paymentTtlMs: number,
    /** Owned-coupon lists to evict when an order uses or gives back a coupon. */
    private readonly couponCache: UserCouponCache = noUserCouponCache,
  ) {}

  async placeOrder(input: PlaceOrderInput): Promise<PlacedOrder> {
    const now = this.clock();
    if (!(await this.repo.userExists(input.userId))) throw new AppError("USER_NOT_FOUND");
    const ids = input.orderProducts.map((p) => p.productId);
    const products = new Map((await this.repo.findProducts(ids)).map((p) => [p.id, p.price]));
    const items: OrderItemRow[] = [];
    for (const line of [...input.orderProducts].sort((a, b) => a.productId - b.productId)) {
      const price = products.get(line.productId);
      if (price === undefined) throw new AppError("PRODUCT_NOT_FOUND");
      items.push({ productId: line.productId, quantity: line.quantity, unitPrice: price, amount: price * line.quantity });
    }
    let coupon: { discountType: "RATE" | "AMOUNT"; discountValue: number } | undefined;
    if (input.userCouponId !== undefined) {
      const uc = await this.repo.findUserCoupon(input.userCouponId);
      if (!uc || uc.userId !== input.userId) throw new AppError("COUPON_NOT_OWNED");
      const usable = couponUsability(uc, now);
      if (usable !== "OK") throw new AppError(usable);
      coupon = uc;
    }
    const amounts = orderAmounts(items, coupon);
    const userCouponId = input.userCouponId ?? null;
    const orderId = await this.repo.insertPending({ userId: input.userId, userCouponId, ...amounts, items }, now, now + this.paymentTtlMs);

    const reserved: number[] = [];
    try {
      for (const item of items) {
        reserved.push(item.productId);
        const r = await this.stock.reserve(item.productId, orderId, item.quantity, now);
        if (!r.ok) {
          reserved.pop(); // a definite refusal took nothing: no release (and no tombstone) needed there
          // Anything but a business refusal (an unreachable or overloaded DO) is transient: 503, retry.
          throw r.reason === "INSUFFICIENT_STOCK" ? new AppError("INSUFFICIENT_STOCK") : new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
        }
      }
      // Order does not matter for confirms. A hold that timed out is refused (and released by its DO).
      const confirms = await Promise.all(items.map((item) => this.stock.confirm(item.productId, orderId)));
      // The saga stalled longer than a hold lives (overload): nothing is kept, the client may retry.
      if (!confirms.every((c) => c.ok)) throw new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
      const expiresAt = this.clock() + this.paymentTtlMs;
      const committed = await this.commit(orderId, input.userId, userCouponId, expiresAt);
      if (!committed.ok) throw await this.placementConflict(input.userId, userCouponId);
      if (userCouponId !== null) await this.couponCache.evict([input.userId]);
      return { orderId, status: "NOT_PAID", ...amounts, expiresAt: toIso(expiresAt) };
    } catch (err) {
      await this.compensate(orderId, reserved);
      throw err;
    }
  }

  /** Step (c); an ambiguous D1 error is resolved by reading the order back. */
  private async commit(orderId: number, userId: number, userCouponId: number | null, expiresAt: number) {
    try {
      return await this.repo.commitPlacement(orderId, userId, userCouponId, this.clock(), expiresAt);
    } catch (err) {
      const order = await this.repo.findOrder(orderId).catch(() => undefined);
      if (order?.status === "NOT_PAID") return { ok: true as const };
      throw err;
    }
  }

  /** Why the commit batch aborted: the coupon (used/expired meanwhile) or the order (failed by the cleanup job). */
  private async placementConflict(userId: number, userCouponId: number | null): Promise<AppError> {
    if (userCouponId !== null) {
      const uc = await this.repo.findUserCoupon(userCouponId);
      if (!uc || uc.userId !== userId) return new AppError("COUPON_NOT_OWNED");
      const usable = couponUsability(uc, this.clock());
      if (usable !== "OK") return new AppError(usable);
    }
    return new AppError("INTERNAL_ERROR", "order placement was abandoned");
  }

  /**
   * Undo of a placement that did not commit: PENDING -> FAILED first (so a
   * commit that landed after all is never undone), then release every DO
   * touched (also the one whose call failed: it may have applied) and mark
   * the order settled. If we die in between, the cron settles it (releases
   * are idempotent).
   */
  private async compensate(orderId: number, productIds: number[]): Promise<void> {
    try {
      const failed = (await this.repo.markFailed(orderId, this.clock())) || (await this.repo.findOrder(orderId))?.status === "FAILED";
      if (failed) await this.releaseAndSettle(orderId, productIds.map((productId) => ({ productId })));
    } catch (err) {
      log("error", "placement compensation failed; cleanup job will retry", { orderId, ...errorFields(err) });
    }
  }

  async getOrder(orderId: number, userId: number): Promise<OrderView> {
    const order = await this.repo.findOrder(orderId);
    if (!order || order.userId !== userId || !isPublicStatus(order.status)) throw new AppError("ORDER_NOT_FOUND");
    return this.view(order, await this.repo.findItems(orderId));
  }

  /**
   * NOT_PAID -> CANCELLED with the coupon restored and the stock released.
   * Cancelling a cancelled order returns it; PAID or EXPIRED is refused.
   */
  async cancelOrder(orderId: number, userId: number): Promise<OrderView> {
    const now = this.clock();
    const order = await this.repo.findOrder(orderId);
    if (!order || order.userId !== userId || !isPublicStatus(order.status)) throw new AppError("ORDER_NOT_FOUND");
    const items = await this.repo.findItems(orderId);
    if (order.status === "NOT_PAID") {
      const moved = await this.repo.closeUnpaid(orderId, "CANCELLED", now, { userId, notExpiredAt: now });
      if (moved && order.userCouponId !== null) await this.couponCache.evict([userId]);
      if (moved) await this.releaseAndSettle(orderId, items);
    }
    const after = (await this.repo.findOrder(orderId))!;
    if (after.status !== "CANCELLED") throw new AppError("ORDER_NOT_CANCELLABLE");
    return this.view(after, items);
  }

  /** Tells the DOs to give the units back, then records that it was done. */
  async releaseAndSettle(orderId: number, items: { productId: number }[]): Promise<void> {
    const results = await Promise.allSettled(items.map((i) => this.stock.release(i.productId, orderId)));
    const failed = results.filter((r) => r.status === "rejected" || !r.value.ok);
    if (failed.length > 0) {
      log("error", "stock release incomplete; cron will retry", { orderId });
      return;
    }
    await this.repo.markSettled(orderId, this.clock());
  }

  private view(order: OrderRow, items: OrderItemRow[]): OrderView {
    return {
      orderId: order.id,
      userId: order.userId,
      status: effectiveStatus(order.status as PublicOrderStatus, order.expiresAt, this.clock()),
      itemsAmount: order.itemsAmount,
      discountAmount: order.discountAmount,
      totalAmount: order.totalAmount,
      userCouponId: order.userCouponId,
      createdAt: toIso(order.createdAt),
      expiresAt: toIso(order.expiresAt),
      paidAt: toIsoOrNull(order.paidAt),
      items,
    };
  }
}
