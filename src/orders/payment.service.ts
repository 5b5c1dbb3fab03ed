import type { StockPort } from "../products/product-stock.client";
import { toIso } from "../shared/clock";
import { AppError } from "../shared/errors";
import { log } from "../shared/logger";
import { isPublicStatus } from "./order.rules";
import type { OrdersRepo } from "./orders.repo";
import type { PaidLine, PaymentBatchResult, PaymentCommand, PaymentRepo } from "./payment.repo";
import { KeyTakenError, type KeyClaim } from "../shared/idempotency";

/** What post-commit work learns about a payment. */
export interface PaidOrder {
  orderId: number;
  userId: number;
  paidAt: number;
  items: PaidLine[];
}

export interface PaymentReceipt {
  orderId: number;
  status: "PAID";
  paidAmount: number;
  balance: number;
}

/**
 * Pays an order from the point balance (docs/ARCHITECTURE.md §3 "Paying"). Everything that
 * must agree is one D1 batch; the DOs are told afterwards (sell), and a crash
 * before that is healed by the cron (the order stays unsettled until then).
 * A committed payment is never answered as a failure: when D1's answer is lost
 * the committed state is read back.
 */
/** What PaymentService needs; only `orders`, `payments`, `stock` and `clock` are required. */
export interface PaymentServiceDeps {
  orders: OrdersRepo;
  payments: PaymentRepo;
  stock: StockPort;
  clock: () => number;
  newId?: () => string;
  /** Best-effort work after the commit (ranking increment, outbox relay). */
  onPaid?: (paid: PaidOrder) => void;
  /**
   * Records `closed_at` after the answer (ctx.waitUntil, outside the request's round trips);
   * the default writes it at once. The settle cron covers a write that is lost.
   */
  markSettledLater?: (orderId: number) => void;
  /** The user's balance, read back only when the batch's answer was lost (src/points). */
  balanceOf?: (userId: number) => Promise<number>;
  /**
   * Where the state is read back after an ambiguous commit: the primary (src/db/client.ts
   * primaryD1), never the request's session, whose later reads may come from a replica
   * that has not seen the commit yet. Defaults to `orders`.
   */
  readBack?: OrdersRepo;
}

export class PaymentService {
  private readonly orders: OrdersRepo;
  private readonly payments: PaymentRepo;
  private readonly stock: StockPort;
  private readonly clock: () => number;
  private readonly newId: () => string;
  private readonly onPaid?: (paid: PaidOrder) => void;
  private readonly markSettledLater: (orderId: number) => void;
  private readonly balanceOf: (userId: number) => Promise<number>;
  private readonly readBack: OrdersRepo;

  constructor(deps: PaymentServiceDeps) {
    this.orders = deps.orders;
    this.payments = deps.payments;
    this.stock = deps.stock;
    this.clock = deps.clock;
    this.newId = deps.newId ?? (() => crypto.randomUUID());
    this.onPaid = deps.onPaid;
    this.markSettledLater = deps.markSettledLater ?? ((orderId) => void this.orders.markSettled(orderId, this.clock()));
    this.balanceOf = deps.balanceOf ?? (async () => 0);
    this.readBack = deps.readBack ?? deps.orders;
  }

  /**
   * Two round trips (docs/ARCHITECTURE.md §8): the payment batch, then the sell fan-out to
   * the stock shard of each line. Recording that the objects were told (`closed_at`), the
   * ranking increment and the outbox relay run after the answer; the crons heal
   * any of them a crash loses.
   */
  async payOrder(userId: number, orderId: number, claim?: KeyClaim): Promise<PaymentReceipt> {
    const now = this.clock();
    const result = await this.pay({ orderId, userId, now, paidAtIso: toIso(now), eventId: this.newId(), claim });
    if (!result.ok) {
      if (result.reason === "KEY_TAKEN") throw new KeyTakenError();
      if (result.reason === "INSUFFICIENT_BALANCE") throw new AppError("INSUFFICIENT_BALANCE");
      throw await this.classify(userId, orderId);
    }
    if (claim) claim.stored = true;
    const { items } = result;
    // Best effort after the commit: ranking increment, outbox relay (both healed by crons).
    this.onPaid?.({ orderId, userId, paidAt: now, items });

    const sold = await Promise.allSettled(items.map((i) => this.stock.sell(i.productId, i.stockShard, orderId)));
    if (sold.every((r) => r.status === "fulfilled" && r.value.ok)) this.markSettledLater(orderId);
    else log("error", "stock sell incomplete after payment; cron will retry", { orderId });
    return { orderId, status: "PAID", paidAmount: result.paidAmount, balance: result.balance };
  }

  /** The batch; an ambiguous D1 error is resolved by reading the order back, and a committed payment is answered as paid. */
  private async pay(cmd: PaymentCommand): Promise<PaymentBatchResult> {
    try {
      return await this.payments.pay(cmd);
    } catch (err) {
      const order = await this.readBack.findOrder(cmd.orderId).catch(() => undefined);
      if (order?.status !== "PAID" || order.userId !== cmd.userId || order.paidAt !== cmd.now) throw err;
      const [items, balance] = await Promise.all([this.readBack.findItems(cmd.orderId), this.balanceOf(cmd.userId)]);
      return { ok: true, paidAmount: order.totalAmount, balance, items };
    }
  }

  /** Reads the state back to say why the batch aborted. */
  private async classify(userId: number, orderId: number): Promise<AppError> {
    const order = await this.orders.findOrder(orderId);
    if (!order || order.userId !== userId || !isPublicStatus(order.status)) return new AppError("ORDER_NOT_FOUND");
    return new AppError("ORDER_NOT_PAYABLE");
  }
}
