import type { Config } from "./config";
import { purgeEventTables, type RetentionReport } from "./events/retention.job";
import { createDb, primaryD1, sessionAsDatabase, type Db } from "./db/client";
import { AdminRepo } from "./admin/admin.repo";
import { AdminService } from "./admin/admin.service";
import { AdminListsRepo } from "./admin/admin-lists.repo";
import { CouponsRepo } from "./coupons/coupons.repo";
import { CouponsService } from "./coupons/coupons.service";
import { couponIssuerClient } from "./coupons/coupon-issuer.client";
import { noUserCouponCache, redisUserCouponCache, type UserCouponCache } from "./coupons/user-coupon.cache";
import { PointsRepo } from "./points/points.repo";
import { PointsService } from "./points/points.service";
import { ProductsRepo } from "./products/products.repo";
import { StockShardsService } from "./products/stock-shards.service";
import { now } from "./shared/clock";
import { placeObjects } from "./shared/object-placement";
import { errorFields, log } from "./shared/logger";
import { createRedis } from "./infra/redis";
import { noRankingCache, redisRankingCache } from "./rankings/ranking.store";
import { RankingsRepo } from "./rankings/rankings.repo";
import { RankingsService } from "./rankings/rankings.service";
import { BacklogRepo } from "./admin/backlog.repo";
import { DeadLettersRepo } from "./events/dead-letters.repo";
import { relayOutbox, type RelayResult } from "./events/outbox.relay";
import { RelaySoon } from "./events/relay-soon";
import { queueTransport, upstashKafkaTransport, type EventTransport } from "./events/transport";
import { OrderSweepRepo } from "./orders/order-sweep.repo";
import { OrdersRepo } from "./orders/orders.repo";
import { OrdersService } from "./orders/orders.service";
import { PaymentRepo } from "./orders/payment.repo";
import { PaymentService } from "./orders/payment.service";
import { DurableObjectStock, type StockPort } from "./products/product-stock.client";
import { IdempotencyRepo, type IdempotencyStore } from "./shared/idempotency.repo";
import type { WriteLimiters } from "./shared/rate-limit";
import { analyticsMetrics, type Metrics } from "./shared/metrics";
import { HEALTH_PROBE_OBJECT, type HealthProbes } from "./admin/health";
import { isolateSoldOut } from "./coupons/sold-out";
import { callObject, detachedMeter, HopMeter, meterD1 } from "./shared/hops";
import { laterBookmark, withSessionArg, type SessionStart } from "./shared/d1-session";
import { aloneOn, SharedWrites, type WriteBatcher } from "./shared/write-batches";
import { groupStatsOf, runtimeSettlesAcrossRequests, type GroupStats } from "./shared/group-commit";

/**
 * Everything a handler may use, built once per request (or per cron/queue
 * invocation) from the bindings. Handlers never touch raw bindings.
 */
export interface Services {
  clock: () => number;
  /** Deletes event rows older than EVENT_RETENTION_DAYS, one bounded batch (the retention cron). */
  purgeEvents: (now: number) => Promise<RetentionReport>;
  /** This request's round-trip accounting (docs/ARCHITECTURE.md §8); every D1 and DO call below goes through it. */
  meter: HopMeter;
  /** This request's D1 session: where it started, and the bookmark to answer (`x-d1-bookmark`). */
  session: { start: SessionStart; bookmark(): string | null };
  /** The primary, metered with the request's other calls: for reads that must see the latest commit. */
  primary: D1Database;
  db: Db;
  points: PointsService;
  productsRepo: ProductsRepo;
  couponsRepo: CouponsRepo;
  coupons: CouponsService;
  /** Owned-coupon lists in Redis; order placement (use), cancel and expiry (restore) evict. */
  userCouponCache: UserCouponCache;
  /** Admin use cases of no other context (a user with an opening balance). */
  admin: AdminService;
  /** The operator console's coupon and product lists. */
  adminLists: AdminListsRepo;
  rankings: RankingsService;
  events: {
    transport: EventTransport;
    /** Publishes due outbox rows (bounded); safe to run concurrently with the cron. */
    relay(): Promise<RelayResult>;
    deadLetters: DeadLettersRepo;
    /** Pending outbox rows and waiting dead letters, counted by bounded index ranges (GET /admin/stats). */
    backlog: BacklogRepo;
    /** Re-sends a dead letter's event to the events queue. */
    replay(payload: unknown): Promise<void>;
  };
  /** Idempotency-Key claims and stored responses (D1 `idempotency_keys`). */
  idempotency: IdempotencyStore;
  /** Analytics Engine data points (binding METRICS; a no-op without it). */
  metrics: Metrics;
  /** What GET /admin/health probes (src/admin/health.ts). */
  health: HealthProbes;
  /** The `[[ratelimits]]` bindings of the write limits (src/shared/rate-limit.ts). */
  writeLimiters: WriteLimiters;
  stock: StockPort;
  /** Priming, raising and viewing a product's stock shards (admin). */
  stockShards: StockShardsService;
  ordersRepo: OrdersRepo;
  /** This isolate's group-commit queues and their counters (admin view; src/shared/group-commit.ts). */
  d1Groups(): Record<string, GroupStats>;
  /** Set-based D1 side of the order crons. */
  orderSweep: OrderSweepRepo;
  orders: OrdersService;
  payments: PaymentService;
}

export interface ServicesOptions {
  /** The request's execution context: work after the answer stays alive through its waitUntil. */
  ctx?: { waitUntil(promise: Promise<unknown>): void };
  /** The request's round-trip accounting (default: a fresh meter). */
  meter?: HopMeter;
  /** Where the D1 session starts (default: the primary: crons and direct calls write, and act on the latest commit). */
  start?: SessionStart;
  /**
   * Whether charges, payments and placements share D1 batches with the isolate's concurrent
   * requests (src/shared/group-commit.ts). Default: when the runtime allows it
   * (`runtimeSettlesAcrossRequests`); tests that drive the app from one context turn it on.
   */
  shareWriteBatches?: boolean;
  /**
   * Services of a cron run, not of a request: their Redis writes (evictions included) take the
   * background lane, with its longer timeout and retry (src/infra/redis.ts). Default: a request's.
   */
  background?: boolean;
}

/** One coalescing relay per D1 binding, i.e. per isolate (src/events/relay-soon.ts). */
const relaysSoon = new WeakMap<D1Database, RelaySoon>();
function relaySoonFor(d1: D1Database): RelaySoon {
  let r = relaysSoon.get(d1);
  if (!r) {
    r = new RelaySoon();
    relaysSoon.set(d1, r);
  }
  return r;
}

/** Kafka when its settings are present, else the Cloudflare Queue (default). */
export function createEventTransport(env: Env, config: Config): EventTransport {
  return config.kafka ? upstashKafkaTransport(config.kafka) : queueTransport(env.EVENTS_QUEUE);
}

export function createServices(env: Env, config: Config, options: ServicesOptions = {}): Services {
  const { ctx, meter = new HopMeter(), start = { kind: "primary" } } = options;
  // Every query of the bare binding runs on the primary (src/db/client.ts primaryD1): the
  // read-backs after an ambiguous commit use it, metered with the request's other calls.
  const primary = meterD1(primaryD1(env.DB), meter);
  // A request's D1 work runs in one session (read replicas, docs/ARCHITECTURE.md §1), unless it asked for the primary.
  const session = start.kind === "primary" ? undefined : env.DB.withSession(withSessionArg(start));
  const bare = session ? sessionAsDatabase(session) : primaryD1(env.DB);
  const d1 = session ? meterD1(bare, meter) : primary;
  // Charges, payments and placement commits share D1 batches with the isolate's concurrent
  // requests of their kind (src/shared/group-commit.ts); a batch this request sends goes out
  // on its own session, unmetered, and each member notes its own share on its meter.
  const share = options.shareWriteBatches ?? runtimeSettlesAcrossRequests();
  const keepAlive = ctx ? (work: Promise<unknown>) => ctx.waitUntil(work) : undefined;
  const writes: WriteBatcher = share
    ? new SharedWrites({ binding: env.DB, session: bare, bookmark: () => session?.getBookmark() ?? null, meter, keepAlive })
    : aloneOn(d1);
  const db = createDb(d1);
  const clock = now;
  const pointsRepo = new PointsRepo(db, d1, writes);
  const productsRepo = new ProductsRepo(db);
  const redis = createRedis(config);
  const rankingCache = redis ? redisRankingCache(redis, config.redisKeyPrefix) : noRankingCache;
  const userCouponCache = redis
    ? redisUserCouponCache(redis, config.redisKeyPrefix, options.background ? "background" : "request")
    : noUserCouponCache;
  const transport = createEventTransport(env, config);
  const relay = () => relayOutbox(d1, transport, clock());
  const rankings = new RankingsService({
    repo: new RankingsRepo(d1),
    products: productsRepo,
    cache: rankingCache,
    timeZone: config.businessTimeZone,
    clock,
  });
  // Best-effort work after the answer; the Worker stays alive for it through ctx.waitUntil
  // (without a request context, e.g. a direct service call in a test, it runs inline, unawaited).
  const afterCommit = (work: () => Promise<unknown>) => {
    const p = work().catch((err) => log("error", "after-commit work failed", errorFields(err)));
    ctx?.waitUntil(p);
  };
  // Work after the answer is not part of the request's round trips: its own primary session, opened when it runs.
  // Its `closed_at` writes share batches too (after the answer: a meter nobody reads).
  const settleWrites: WriteBatcher = share
    ? new SharedWrites({ binding: env.DB, session: primaryD1(env.DB), bookmark: () => null, meter: detachedMeter(), keepAlive })
    : aloneOn(primaryD1(env.DB));
  const markSettledLater = (orderId: number) =>
    afterCommit(() => new OrdersRepo(primaryD1(env.DB), settleWrites).markSettled(orderId, clock()));
  const stock = new DurableObjectStock(placeObjects(env.PRODUCT_STOCK, config.doLocationHint), meter);
  const couponsRepo = new CouponsRepo(db);
  const ordersRepo = new OrdersRepo(d1, writes);
  const readBackRepo = new OrdersRepo(primary);
  const metrics = analyticsMetrics(env.METRICS as AnalyticsEngineDataset | undefined);
  return {
    events: {
      transport,
      relay,
      deadLetters: new DeadLettersRepo(d1),
      backlog: new BacklogRepo(d1),
      replay: async (payload) => {
        await env.EVENTS_QUEUE.send(payload, { contentType: "json" });
      },
    },
    rankings,
    clock,
    meter,
    // The newest of the session's own bookmark and those of shared batches another request sent.
    session: { start, bookmark: () => laterBookmark(session?.getBookmark() ?? null, writes.bookmark()) },
    primary,
    db,
    points: new PointsService(pointsRepo, clock),
    productsRepo,
    couponsRepo,
    userCouponCache,
    coupons: new CouponsService({
      repo: couponsRepo,
      issuer: couponIssuerClient(placeObjects(env.COUPON_ISSUER, config.doLocationHint), meter),
      clock,
      cache: userCouponCache,
      soldOut: isolateSoldOut,
      metrics,
    }),
    admin: new AdminService({ repo: new AdminRepo(d1), clock }),
    adminLists: new AdminListsRepo(d1),
    stock,
    stockShards: new StockShardsService(productsRepo, stock, clock),
    ordersRepo,
    d1Groups: () => groupStatsOf(env.DB),
    purgeEvents: (now) => purgeEventTables({ d1: primary, now, retentionMs: config.eventRetentionMs, clock }),
    orderSweep: new OrderSweepRepo(d1),
    orders: new OrdersService({
      repo: ordersRepo,
      stock,
      clock,
      paymentTtlMs: config.orderPaymentTtlMs,
      couponCache: userCouponCache,
      markSettledLater,
      readBack: readBackRepo,
      metrics,
    }),
    payments: new PaymentService({
      orders: ordersRepo,
      payments: new PaymentRepo(d1, writes),
      stock,
      clock,
      onPaid: (paid) =>
        afterCommit(async () => {
          await rankings.recordPaidOrder({ orderId: paid.orderId, paidAt: paid.paidAt, items: paid.items });
          // The relay is keyed by the binding (one per isolate) and runs on the primary.
          await relaySoonFor(env.DB).request(() => relayOutbox(primaryD1(env.DB), transport, clock()));
        }),
      markSettledLater,
      balanceOf: async (userId) => (await new PointsRepo(createDb(primary), primary).findBalance(userId)) ?? 0,
      readBack: readBackRepo,
    }),
    // Stored answers are read where they were written: a replay after KEY_TAKEN must see the twin's commit.
    idempotency: new IdempotencyRepo(primary),
    metrics,
    health: {
      // The request's session, which for an admin route starts at the primary (the database that takes the writes).
      backlog: (cap) => new BacklogRepo(d1).read(cap),
      couponObject: () => callObject(meter, () => env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(HEALTH_PROBE_OBJECT)).counts()),
      // On the request lane: the health of Redis as a request sees it (its timeout included).
      redis: redis ? () => meter.time("redis", () => redis.request.redis.ping()) : undefined,
    },
    // Optional at run time (a harness that binds less, e.g. scripts/bench): a missing one lets writes through, logged.
    writeLimiters: { perUser: env.WRITES_PER_USER as RateLimit | undefined, perIp: env.WRITES_PER_IP as RateLimit | undefined },
  };
}
