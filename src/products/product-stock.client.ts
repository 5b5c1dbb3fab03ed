import { callObject, HopMeter } from "../shared/hops";
import type { ObjectNamespace } from "../shared/object-placement";
import { shardObjectName, type ShardAddress } from "../sharding/routing";
import type {
  ConfirmResult,
  PrimeResult,
  ProductStock,
  ReleaseResult,
  ReserveRequest,
  ReserveResult,
  RestockResult,
  SellResult,
  SettleManyResult,
  StockShardState,
  StockSnapshot,
} from "./product-stock.do";

/**
 * The stock port the order use cases depend on: a product's stock is K
 * ProductStock shards (K = `products.stock_shards`), shard `s` addressed by
 * `idFromName(shardObjectName(productId, s))`; shard 0 is the object of an
 * unsharded product. An order line is reserved on, and sold or released at, the
 * shard stored on it (`order_items.stock_shard`); restocks go to shard 0.
 */
export interface StockPort {
  /** `confirmed`: reserve and confirm in one call (placement's fan-out). `at`: the line's shard and the product's K. */
  reserve(request: ReserveRequest & { at: ShardAddress }): Promise<ReserveResult>;
  confirm(productId: number, shard: number, orderId: number): Promise<ConfirmResult>;
  sell(productId: number, shard: number, orderId: number): Promise<SellResult>;
  release(productId: number, shard: number, orderId: number): Promise<ReleaseResult>;
  /** Sells and releases many orders of one product shard in one call (the crons' batched settlement). */
  settleMany(productId: number, shard: number, sellIds: number[], releaseIds: number[]): Promise<SettleManyResult>;
  restock(productId: number, delta: number): Promise<RestockResult>;
  snapshot(productId: number, shard?: number): Promise<StockSnapshot | undefined>;
  /** The snapshot plus the shard's open transfers and load indicators (the admin shard view). */
  state(productId: number, shard?: number): Promise<StockShardState | undefined>;
  /** Writes the shard's D1 projection now; true when D1 is up to date. */
  flush(productId: number, shard?: number): Promise<boolean>;
  /** Loads every shard 0..shards-1 in parallel and tells it K; with `prefetch`, shards i > 0 take their fair share. */
  prime(productId: number, shards: number, prefetch: boolean): Promise<(PrimeResult | undefined)[]>;
}

/** Adapter over the PRODUCT_STOCK namespace; what a shard waited for before answering counts as nested hops. */
export class DurableObjectStock implements StockPort {
  constructor(
    private readonly ns: ObjectNamespace<ProductStock>,
    private readonly meter: HopMeter = new HopMeter(),
  ) {}

  /** One counted RPC; the result is the DO's plain return value (RPC wraps it in a stub type). */
  private rpc<T>(call: () => PromiseLike<unknown>): Promise<T> {
    return callObject<T>(this.meter, call);
  }

  private stub(productId: number, shard = 0): DurableObjectStub<ProductStock> {
    return this.ns.get(this.ns.idFromName(shardObjectName(productId, shard)));
  }

  reserve(request: ReserveRequest & { at: ShardAddress }): Promise<ReserveResult> {
    return callObject<ReserveResult>(
      this.meter,
      async () => {
        const out = (await this.stub(request.productId, request.at.shard).reserve(request)) as ReserveResult;
        if (out.nested) {
          this.meter.noteNested("do", out.nested.do);
          this.meter.noteNested("d1", out.nested.d1);
        }
        return out;
      },
      (out) => (out.nested ? out.nested.do + out.nested.d1 : 0),
    );
  }
  confirm(productId: number, shard: number, orderId: number): Promise<ConfirmResult> {
    return this.rpc(() => this.stub(productId, shard).confirm(orderId));
  }
  sell(productId: number, shard: number, orderId: number): Promise<SellResult> {
    return this.rpc(() => this.stub(productId, shard).sell(orderId));
  }
  release(productId: number, shard: number, orderId: number): Promise<ReleaseResult> {
    return this.rpc(() => this.stub(productId, shard).release(orderId));
  }
  settleMany(productId: number, shard: number, sellIds: number[], releaseIds: number[]): Promise<SettleManyResult> {
    return this.rpc(() => this.stub(productId, shard).settleMany(sellIds, releaseIds));
  }
  restock(productId: number, delta: number): Promise<RestockResult> {
    return this.rpc(() => this.stub(productId, 0).restock(productId, delta));
  }
  snapshot(productId: number, shard = 0): Promise<StockSnapshot | undefined> {
    return this.rpc(() => this.stub(productId, shard).snapshot(productId, shard));
  }
  state(productId: number, shard = 0): Promise<StockShardState | undefined> {
    return this.rpc(() => this.stub(productId, shard).state(productId, shard));
  }
  flush(productId: number, shard = 0): Promise<boolean> {
    return this.rpc(() => this.stub(productId, shard).flush());
  }
  async prime(productId: number, shards: number, prefetch: boolean): Promise<(PrimeResult | undefined)[]> {
    const all = Array.from({ length: shards }, (_, shard) => shard);
    // One parallel step: shard 0 loads the product's stock on the first call that reaches it (its own, or a sibling's give).
    const primed = await Promise.all(
      all.map((shard) => this.rpc<PrimeResult | undefined>(() => this.stub(productId, shard).prime(productId, shard, shards, prefetch))),
    );
    // The givers changed after their own prime projected: one more step leaves D1 exact (an admin call, rare).
    if (prefetch && shards > 1) await Promise.all(all.map((shard) => this.flush(productId, shard)));
    return primed;
  }
}
