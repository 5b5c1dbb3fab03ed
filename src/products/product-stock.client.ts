import type { Env } from "../env";
import type {
  ConfirmResult,
  ProductStock,
  ReleaseResult,
  ReserveResult,
  RestockResult,
  SellResult,
  StockSnapshot,
} from "./product-stock.do";

/**
 * The stock port the order use cases depend on: one ProductStock DO per
 * product, addressed by `idFromName(String(productId))`.
 */
export interface StockPort {
  reserve(productId: number, orderId: number, quantity: number, now: number): Promise<ReserveResult>;
  confirm(productId: number, orderId: number): Promise<ConfirmResult>;
  sell(productId: number, orderId: number): Promise<SellResult>;
  release(productId: number, orderId: number): Promise<ReleaseResult>;
  restock(productId: number, delta: number): Promise<RestockResult>;
  snapshot(productId: number): Promise<StockSnapshot | undefined>;
}

/** Adapter over the PRODUCT_STOCK namespace. */
export class DurableObjectStock implements StockPort {
  constructor(private readonly ns: Env["PRODUCT_STOCK"]) {}

  private stub(productId: number): DurableObjectStub<ProductStock> {
    return this.ns.get(this.ns.idFromName(String(productId)));
  }

  reserve(productId: number, orderId: number, quantity: number, now: number) {
    return this.stub(productId).reserve(productId, orderId, quantity, now);
  }
  confirm(productId: number, orderId: number) {
    return this.stub(productId).confirm(orderId);
  }
  sell(productId: number, orderId: number) {
    return this.stub(productId).sell(orderId);
  }
  release(productId: number, orderId: number) {
    return this.stub(productId).release(orderId);
  }
  restock(productId: number, delta: number) {
    return this.stub(productId).restock(productId, delta);
  }
  snapshot(productId: number) {
    return this.stub(productId).snapshot(productId);
  }
}
