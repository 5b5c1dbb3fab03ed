import { callObject, HopMeter } from "../shared/hops";
import type {
  ConfirmResult,
  ProductStock,
  ReleaseResult,
  ReserveResult,
  RestockResult,
  SellResult,
  SettleManyResult,
  StockSnapshot,
} from "./product-stock.do";

/**
 * The stock port the order use cases depend on: one ProductStock DO per
 * product, addressed by `idFromName(String(productId))`.
 */
export interface StockPort {
  /** `confirmed`: reserve and confirm in one call (placement's fan-out). */
  reserve(productId: number, orderId: number, quantity: number, now: number, confirmed?: boolean): Promise<ReserveResult>;
  confirm(productId: number, orderId: number): Promise<ConfirmResult>;
  sell(productId: number, orderId: number): Promise<SellResult>;
  release(productId: number, orderId: number): Promise<ReleaseResult>;
  /** Sells and releases many orders of one product in one call (the crons' batched settlement). */
  settleMany(productId: number, sellIds: number[], releaseIds: number[]): Promise<SettleManyResult>;
  restock(productId: number, delta: number): Promise<RestockResult>;
  snapshot(productId: number): Promise<StockSnapshot | undefined>;
  /** Writes the object's D1 projection now; true when D1 is up to date. */
  flush(productId: number): Promise<boolean>;
}

/** Adapter over the PRODUCT_STOCK namespace. */
export class DurableObjectStock implements StockPort {
  constructor(
    private readonly ns: Env["PRODUCT_STOCK"],
    private readonly meter: HopMeter = new HopMeter(),
  ) {}

  /** One counted RPC; the result is the DO's plain return value (RPC wraps it in a stub type). */
  private rpc<T>(call: () => PromiseLike<unknown>): Promise<T> {
    return callObject<T>(this.meter, call);
  }

  private stub(productId: number): DurableObjectStub<ProductStock> {
    return this.ns.get(this.ns.idFromName(String(productId)));
  }

  reserve(productId: number, orderId: number, quantity: number, now: number, confirmed = false): Promise<ReserveResult> {
    return this.rpc(() => this.stub(productId).reserve(productId, orderId, quantity, now, confirmed));
  }
  confirm(productId: number, orderId: number): Promise<ConfirmResult> {
    return this.rpc(() => this.stub(productId).confirm(orderId));
  }
  sell(productId: number, orderId: number): Promise<SellResult> {
    return this.rpc(() => this.stub(productId).sell(orderId));
  }
  release(productId: number, orderId: number): Promise<ReleaseResult> {
    return this.rpc(() => this.stub(productId).release(orderId));
  }
  settleMany(productId: number, sellIds: number[], releaseIds: number[]): Promise<SettleManyResult> {
    return this.rpc(() => this.stub(productId).settleMany(sellIds, releaseIds));
  }
  restock(productId: number, delta: number): Promise<RestockResult> {
    return this.rpc(() => this.stub(productId).restock(productId, delta));
  }
  snapshot(productId: number): Promise<StockSnapshot | undefined> {
    return this.rpc(() => this.stub(productId).snapshot(productId));
  }
  flush(productId: number): Promise<boolean> {
    return this.rpc(() => this.stub(productId).flush());
  }
}
