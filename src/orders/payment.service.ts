import type { StockPort } from "../products/product-stock.client";
import { toIso } from "../shared/clock";
import { AppError } from "../shared/errors";
import { log } from "../shared/logger";
import { isPayable } from "./order.rules";
import type { OrdersRepo } from "./orders.repo";
import type { PaymentRepo } from "./payment.repo";
import { orderCompletedEvent } from "../events/event.schemas";

/** What post-commit work learns about a payment. */
export interface PaidOrder {
  orderId: number;
  userId: number;
  paidAt: number;
  items: { productId: number; quantity: number }[];
}

export interface PaymentReceipt {
  orderId: number;
  status: "PAID";
  paidAmount: number;
  balance: number;
}

/**
 * Pays an order from the point balance (DESIGN §3 "Paying"). Everything that
 * must agree is one D1 batch; the DOs are told afterwards (sell), and a crash
 * before that is healed by the cron (the order stays unsettled until then).
 */
export class PaymentService {
  constructor(
    private readonly orders: OrdersRepo,
    private readonly payments: PaymentRepo,
    private readonly stock: StockPort,
    private readonly clock: () => number,
    private readonly newId: () => string = () => crypto.randomUUID(),
    private readonly onPaid?: (paid: PaidOrder) => void,
  ) {}

  async payOrder(userId: number, orderId: number): Promise<PaymentReceipt> {
    const order = await this.orders.findOrder(orderId);
    if (!order || order.userId !== userId || order.status === "PENDING" || order.status === "FAILED") {
      throw new AppError("ORDER_NOT_FOUND");
    }
    const now = this.clock();
    if (!isPayable(order.status, order.expiresAt, now)) throw new AppError("ORDER_NOT_PAYABLE");
    const items = await this.orders.findItems(orderId);
    const event = orderCompletedEvent(
      {
        orderId,
        userId,
        userCouponId: order.userCouponId,
        items,
        itemsAmount: order.itemsAmount,
        discountAmount: order.discountAmount,
        totalAmount: order.totalAmount,
        paidAt: toIso(now),
      },
      this.newId(),
    );
    const result = await this.payments.pay({ orderId, userId, totalAmount: order.totalAmount, now, event });
    if (!result.ok) throw await this.classify(userId, orderId, now, result.reason);
    // Best effort after the commit: ranking increment, outbox relay (both healed by crons).
    this.onPaid?.({ orderId, userId, paidAt: now, items });

    const sold = await Promise.allSettled(items.map((i) => this.stock.sell(i.productId, orderId)));
    if (sold.every((r) => r.status === "fulfilled" && r.value.ok)) await this.orders.markSettled(orderId, this.clock());
    else log("error", "stock sell incomplete after payment; cron will retry", { orderId });
    return { orderId, status: "PAID", paidAmount: order.totalAmount, balance: result.balance };
  }

  /** Reads the state back to say why the batch aborted. */
  private async classify(userId: number, orderId: number, now: number, reason: "GUARD" | "INSUFFICIENT_BALANCE"): Promise<AppError> {
    const order = await this.orders.findOrder(orderId);
    if (!order || order.userId !== userId) return new AppError("ORDER_NOT_FOUND");
    if (!isPayable(order.status, order.expiresAt, now)) return new AppError("ORDER_NOT_PAYABLE");
    if (reason === "INSUFFICIENT_BALANCE") return new AppError("INSUFFICIENT_BALANCE");
    return new AppError("ORDER_NOT_PAYABLE");
  }
}
