import type { StockPort } from "../products/product-stock.client";
import { toIso, toIsoOrNull } from "../shared/clock";
import { AppError } from "../shared/errors";
import { noUserCouponCache, type UserCouponCache } from "../coupons/user-coupon.cache";
import { errorFields, log } from "../shared/logger";
import { couponUsability, effectiveStatus, isPublicStatus, orderAmounts, type PublicOrderStatus } from "./order.rules";
import type { OrderItemRow, OrderListFilter, OrderRow, OrdersRepo, StockLine } from "./orders.repo";
import { decodeCursor, encodeCursor } from "../shared/cursor";
import { ORDER_PAGE_DEFAULT } from "./orders.schemas";
import { KeyTakenError, type KeyClaim } from "../shared/idempotency";
import { noMetrics, type Metrics } from "../shared/metrics";
import { envelopeJson } from "../shared/envelope";

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

/** One order in the user's list (GET /orders): its lines carry the product's name, not where its stock lives. */
export interface ListedOrder {
  orderId: number;
  status: PublicOrderStatus;
  itemsAmount: number;
  discountAmount: number;
  totalAmount: number;
  createdAt: string;
  expiresAt: string;
  paidAt: string | null;
  items: { productId: number; productName: string; quantity: number; unitPrice: number }[];
}

export interface OrderPage {
  userId: number;
  items: ListedOrder[];
  nextCursor: string | null;
}

/** Order-list cursors carry their own tag (src/shared/cursor.ts): another list's cursor is a 400 here. */
const ORDER_CURSOR_TAG = "o";

/**
 * Order placement (a saga over D1 and the ProductStock DOs), reading and cancel.
 *
 * Placement: (a) one batch validates and records the order PENDING with its
 * items (this allocates the id); (b) every line is reserved and confirmed in
 * its DO in parallel, keyed by the order id; (c) one D1 batch uses the coupon
 * and moves the order to NOT_PAID (the commit point). Any failure before (c)
 * commits releases what was reserved and marks the order FAILED. If the Worker
 * dies half-way, the stale-PENDING job fails the order and releases its
 * reservations, so nothing is stranded.
 */
/** What OrdersService needs; `couponCache`, `markSettledLater` and `readBack` have defaults. */
export interface OrdersServiceDeps {
  repo: OrdersRepo;
  stock: StockPort;
  clock: () => number;
  paymentTtlMs: number;
  /** Owned-coupon lists to evict when an order uses or gives back a coupon. */
  couponCache?: UserCouponCache;
  /**
   * Records `closed_at` after the answer (ctx.waitUntil, outside the request's round trips);
   * the default writes it at once. The settle cron covers a write that is lost.
   */
  markSettledLater?: (orderId: number) => void;
  /**
   * Where an ambiguous commit is read back: the primary, never the request's session
   * (whose later reads may come from a replica that has not seen the commit). Defaults to `repo`.
   */
  readBack?: OrdersRepo;
  /** Stock refusals per product, for the operator's charts (src/shared/metrics.ts). Default: none. */
  metrics?: Metrics;
}

export class OrdersService {
  private readonly repo: OrdersRepo;
  private readonly stock: StockPort;
  private readonly clock: () => number;
  private readonly paymentTtlMs: number;
  private readonly couponCache: UserCouponCache;
  private readonly markSettledLater: (orderId: number) => void;
  private readonly readBack: OrdersRepo;
  private readonly metrics: Metrics;

  constructor(deps: OrdersServiceDeps) {
    this.repo = deps.repo;
    this.stock = deps.stock;
    this.clock = deps.clock;
    this.paymentTtlMs = deps.paymentTtlMs;
    this.couponCache = deps.couponCache ?? noUserCouponCache;
    this.markSettledLater = deps.markSettledLater ?? ((orderId) => void this.repo.markSettled(orderId, this.clock()));
    this.readBack = deps.readBack ?? deps.repo;
    this.metrics = deps.metrics ?? noMetrics;
  }

  /**
   * Three round trips, however many lines (docs/ARCHITECTURE.md §8): (1) one D1 batch
   * validates user, products and coupon and records the attempt as a PENDING
   * order with its priced lines, each with its stock shard; (2) one parallel
   * fan-out reserves and confirms every line in its ProductStock shard, keyed by
   * the order id (a shard that must borrow from its siblings reports those calls
   * as nested hops); (3) one D1
   * batch uses the coupon, sets the amounts, moves the order to NOT_PAID (the
   * commit point) and stores the Idempotency-Key with the answer. A refusal in
   * (2) releases what was taken and fails the attempt in one more parallel step.
   */
  async placeOrder(input: PlaceOrderInput, claim?: KeyClaim): Promise<PlacedOrder> {
    const now = this.clock();
    const userCouponId = input.userCouponId ?? null;
    const attempt = await this.repo.recordAttempt(
      { userId: input.userId, userCouponId, lines: input.orderProducts },
      now,
      now + this.paymentTtlMs,
      claim,
    );
    if (!attempt.ok) throw await this.refusal(input, claim);
    const { orderId, items } = attempt;
    const amounts = orderAmounts(items, attempt.coupon);

    const reserves = await Promise.allSettled(
      items.map((item) =>
        this.stock.reserve({
          productId: item.productId,
          orderId,
          quantity: item.quantity,
          now,
          confirmed: true,
          at: { shard: item.stockShard, shards: item.stockShards },
        }),
      ),
    );
    const refused = reserves.some((r) => r.status === "rejected" || !r.value.ok);
    if (refused) {
      // Release everything but a definite refusal (it took nothing); a thrown call may have applied.
      const touched = items.filter((_, k) => {
        const r = reserves[k]!;
        return r.status === "rejected" || r.value.ok;
      });
      await this.abandonUncommitted(orderId, touched);
      let outOfStock = false;
      reserves.forEach((r, k) => {
        if (r.status !== "fulfilled" || r.value.ok || r.value.code !== "INSUFFICIENT_STOCK") return;
        outOfStock = true;
        this.metrics.event("stock.insufficient", items[k]!.productId, r.value.available);
      });
      // A twin under the same Idempotency-Key still in flight may hold the units this attempt lacked: its
      // answer is the one to keep, so this refusal is "in progress" (not stored), never stored under the key.
      if (outOfStock && claim && (await this.repo.twinInFlight(claim, orderId).catch(() => true))) {
        throw new AppError("IDEMPOTENCY_KEY_IN_PROGRESS", undefined, { "Retry-After": "1" });
      }
      // Anything but a business refusal (an unreachable or overloaded object, or stock shards that could
      // neither cover the line nor prove the product sold out: SHARDS_BUSY) is transient: 503, retry.
      throw outOfStock ? new AppError("INSUFFICIENT_STOCK") : new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
    }

    const expiresAt = this.clock() + this.paymentTtlMs;
    const placed: PlacedOrder = { orderId, status: "NOT_PAID", ...amounts, expiresAt: toIso(expiresAt) };
    const key = claim ? { claim, status: 201, body: envelopeJson(placed, 201) } : undefined;
    let committed: Awaited<ReturnType<OrdersRepo["commitPlacement"]>>;
    try {
      committed = await this.commit({ orderId, userId: input.userId, userCouponId, amounts, now: this.clock(), expiresAt }, key);
    } catch (err) {
      await this.compensate(orderId, items);
      throw err;
    }
    if (!committed.ok) {
      await this.compensate(orderId, items);
      if (committed.reason === "KEY_TAKEN") throw new KeyTakenError();
      throw await this.placementConflict(input.userId, userCouponId);
    }
    if (claim) claim.stored = true;
    if (userCouponId !== null) await this.couponCache.evict([input.userId]);
    return placed;
  }

  /** The commit; an ambiguous D1 error is resolved by reading the order back. */
  private async commit(c: Parameters<OrdersRepo["commitPlacement"]>[0], key: Parameters<OrdersRepo["commitPlacement"]>[1]) {
    try {
      return await this.repo.commitPlacement(c, key);
    } catch (err) {
      const order = await this.readBack.findOrder(c.orderId).catch(() => undefined);
      // The batch landed (and with it the key's answer, if any).
      if (order?.status === "NOT_PAID") return { ok: true as const };
      throw err;
    }
  }

  /** Why the first batch refused, in the order a client expects: user, products, coupon. */
  private async refusal(input: PlaceOrderInput, claim?: KeyClaim): Promise<Error> {
    const userCouponId = input.userCouponId ?? null;
    const why = await this.repo.explainRefusedAttempt(
      input.userId,
      input.orderProducts.map((p) => p.productId),
      userCouponId,
      claim,
    );
    if (why.keyTaken) return new KeyTakenError();
    if (!why.userExists) return new AppError("USER_NOT_FOUND");
    if (input.orderProducts.some((p) => !why.productIds.has(p.productId))) return new AppError("PRODUCT_NOT_FOUND");
    if (userCouponId !== null) {
      if (!why.coupon || why.coupon.userId !== input.userId) return new AppError("COUPON_NOT_OWNED");
      const usable = couponUsability(why.coupon, this.clock());
      if (usable !== "OK") return new AppError(usable);
    }
    // Valid now: a concurrent change (coupon restored, product created) raced the batch; the client may retry.
    return new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
  }

  /** Why the commit batch aborted: the coupon (used/expired meanwhile) or the order (failed by the cleanup job). */
  private async placementConflict(userId: number, userCouponId: number | null): Promise<AppError> {
    if (userCouponId !== null) {
      const uc = (await this.repo.explainRefusedAttempt(userId, [], userCouponId)).coupon;
      if (!uc || uc.userId !== userId) return new AppError("COUPON_NOT_OWNED");
      const usable = couponUsability(uc, this.clock());
      if (usable !== "OK") return new AppError(usable);
    }
    return new AppError("SERVICE_UNAVAILABLE", "order placement was abandoned; retry", { "Retry-After": "1" });
  }

  /**
   * Undo of an attempt whose commit was never sent: no commit can land later, so
   * the releases and PENDING -> FAILED go out together (one round trip), and the
   * bookkeeping (`closed_at`) follows after the answer; with nothing to release the
   * order fails closed in one write. The cron settles whatever a crash leaves
   * (releases are idempotent).
   */
  private async abandonUncommitted(orderId: number, items: StockLine[]): Promise<void> {
    if (items.length === 0) {
      // Every object refused outright: none holds anything for the order, so it fails settled, in one write.
      await this.repo.markFailed(orderId, this.clock(), true).catch((err: unknown) => {
        log("error", "failing an abandoned placement failed; cleanup job will retry", { orderId, ...errorFields(err) });
      });
      return;
    }
    const [releases, failed] = await Promise.all([
      Promise.allSettled(items.map((i) => this.stock.release(i.productId, i.stockShard, orderId))),
      this.repo.markFailed(orderId, this.clock()).catch((err: unknown) => {
        log("error", "failing an abandoned placement failed; cleanup job will retry", { orderId, ...errorFields(err) });
        return false;
      }),
    ]);
    if (failed && releases.every((r) => r.status === "fulfilled" && r.value.ok)) {
      this.markSettledLater(orderId);
    } else if (!failed || releases.some((r) => r.status === "rejected")) {
      log("error", "placement compensation incomplete; cron will retry", { orderId });
    }
  }

  /**
   * Undo of a placement whose commit was sent but did not (or may not) land:
   * PENDING -> FAILED first (so a commit that landed after all is never undone), then release every DO
   * touched (also the one whose call failed: it may have applied) and mark
   * the order settled. If we die in between, the cron settles it (releases
   * are idempotent).
   */
  private async compensate(orderId: number, items: StockLine[]): Promise<void> {
    try {
      const failed = (await this.repo.markFailed(orderId, this.clock())) || (await this.repo.isFailed(orderId));
      if (failed) await this.releaseAndSettle(orderId, items);
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
   * A page of the user's orders, newest first, by the status the client sees (an unpaid order past
   * its deadline is EXPIRED before the sweep gets to it); PENDING and FAILED attempts never show.
   * One D1 round trip: the page reads one order more than it answers (to know whether another
   * follows) and the lines of the orders it answers.
   */
  async listOrders(userId: number, page: { status?: PublicOrderStatus; limit?: number; cursor?: string } = {}): Promise<OrderPage> {
    const now = this.clock();
    const limit = page.limit ?? ORDER_PAGE_DEFAULT;
    const after = decodeCursor(page.cursor, ORDER_CURSOR_TAG);
    const filter: OrderListFilter = page.status ?? "ALL";
    const read = await this.repo.listUserOrders({
      userId,
      filter,
      beforeId: after === 0 ? Number.MAX_SAFE_INTEGER : after,
      limit: limit + 1,
      linesOf: limit,
      now,
    });
    if (!read.userExists) throw new AppError("USER_NOT_FOUND");
    const orders = read.orders.slice(0, limit);
    const lines = new Map<number, ListedOrder["items"]>();
    for (const l of read.items) {
      let list = lines.get(l.orderId);
      if (!list) {
        list = [];
        lines.set(l.orderId, list);
      }
      list.push({ productId: l.productId, productName: l.productName, quantity: l.quantity, unitPrice: l.unitPrice });
    }
    const last = orders[orders.length - 1];
    return {
      userId,
      items: orders.map((o) => ({
        orderId: o.id,
        status: effectiveStatus(o.status as PublicOrderStatus, o.expiresAt, now),
        itemsAmount: o.itemsAmount,
        discountAmount: o.discountAmount,
        totalAmount: o.totalAmount,
        createdAt: toIso(o.createdAt),
        expiresAt: toIso(o.expiresAt),
        paidAt: toIsoOrNull(o.paidAt),
        items: lines.get(o.id) ?? [],
      })),
      nextCursor: read.orders.length > limit && last ? encodeCursor(last.id, ORDER_CURSOR_TAG) : null,
    };
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
  async releaseAndSettle(orderId: number, items: StockLine[]): Promise<void> {
    const results = await Promise.allSettled(items.map((i) => this.stock.release(i.productId, i.stockShard, orderId)));
    const failed = results.filter((r) => r.status === "rejected" || !r.value.ok);
    if (failed.length > 0) {
      log("error", "stock release incomplete; cron will retry", { orderId });
      return;
    }
    await this.repo.markSettled(orderId, this.clock());
  }

  private view(order: OrderRow, lines: OrderItemRow[]): OrderView {
    // The public line: where its stock lives is the objects' business, not the client's.
    const items = lines.map((l) => ({ productId: l.productId, quantity: l.quantity, unitPrice: l.unitPrice, amount: l.amount }));
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
