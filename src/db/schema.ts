/**
 * The whole D1 model (docs/ARCHITECTURE.md §1). Constraints make the database refuse invalid
 * states by itself, so a D1 batch aborts as a whole when a precondition fails.
 * Instants are epoch milliseconds (INTEGER). No ON DELETE CASCADE anywhere.
 */
import { sql } from "drizzle-orm";
import { check, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const MAX_BALANCE = 5_000_000;

export const users = sqliteTable("users", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull(),
  createdAt: integer("created_at").notNull(),
});

/** One row per user; the CHECK is the last line of defence for the balance bounds. */
export const userBalances = sqliteTable(
  "user_balances",
  {
    userId: integer("user_id")
      .primaryKey()
      .references(() => users.id),
    balance: integer("balance").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
  },
  (_t) => [check("user_balances_balance_range", sql`balance BETWEEN 0 AND 5000000`)],
);

export const POINT_TYPES = ["CHARGE", "USE", "REFUND"] as const;
export type PointType = (typeof POINT_TYPES)[number];

export const pointHistory = sqliteTable(
  "point_history",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id),
    type: text("type", { enum: POINT_TYPES }).notNull(),
    amount: integer("amount").notNull(),
    balanceAfter: integer("balance_after").notNull(),
    orderId: integer("order_id"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    index("point_history_user_id_idx").on(t.userId, t.id),
    check("point_history_type", sql`type IN ('CHARGE','USE','REFUND')`),
    check("point_history_amount_positive", sql`amount > 0`),
    check("point_history_balance_after_range", sql`balance_after BETWEEN 0 AND 5000000`),
  ],
);

export const products = sqliteTable(
  "products",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    price: integer("price").notNull(),
    /** Projection of the ProductStock DOs' available stock: the sum over `product_stock_shards`. */
    stock: integer("stock").notNull(),
    /** Stock shard objects (docs/ARCHITECTURE.md §9); 1 is one ProductStock object, as before sharding. */
    stockShards: integer("stock_shards").notNull().default(1),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (_t) => [check("products_price_positive", sql`price > 0`), check("products_stock_non_negative", sql`stock >= 0`)],
);

/**
 * One row per ProductStock shard: its available units as the object last projected them.
 * `products.stock` is their sum, recomputed in the same batch as each write.
 */
export const productStockShards = sqliteTable(
  "product_stock_shards",
  {
    productId: integer("product_id")
      .notNull()
      .references(() => products.id),
    shard: integer("shard").notNull(),
    available: integer("available").notNull(),
    /** The shard's monotonic change stamp: a late or retried write never rolls the row back. */
    stamp: integer("stamp").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.productId, t.shard] }),
    check("product_stock_shards_available", sql`available >= 0`),
    check("product_stock_shards_shard", sql`shard >= 0`),
  ],
);

export const DISCOUNT_TYPES = ["RATE", "AMOUNT"] as const;
export type DiscountType = (typeof DISCOUNT_TYPES)[number];

export const coupons = sqliteTable(
  "coupons",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    name: text("name").notNull(),
    discountType: text("discount_type", { enum: DISCOUNT_TYPES }).notNull(),
    discountValue: integer("discount_value").notNull(),
    quantity: integer("quantity").notNull(),
    /** Projection of the CouponIssuer DO's issued count. */
    issuedQuantity: integer("issued_quantity").notNull().default(0),
    startsAt: integer("starts_at").notNull(),
    endsAt: integer("ends_at").notNull(),
    validDays: integer("valid_days").notNull().default(7),
    /** CouponIssuer shard objects (docs/ARCHITECTURE.md §9); 1 is one object, as before sharding. Fixed once the window opens. */
    shards: integer("shards").notNull().default(1),
    /**
     * The CouponIssuer's stamp of the quantity D1 holds (monotonic per change): a quantity write lands only
     * over an older stamp, so a late retry of an older quantity never rolls D1 back (issue 19).
     */
    quantityVersion: integer("quantity_version").notNull().default(0),
    createdAt: integer("created_at").notNull(),
  },
  (_t) => [
    check("coupons_discount_type", sql`discount_type IN ('RATE','AMOUNT')`),
    check(
      "coupons_discount_value_range",
      sql`(discount_type = 'RATE' AND discount_value BETWEEN 1 AND 100) OR (discount_type = 'AMOUNT' AND discount_value > 0)`,
    ),
    check("coupons_quantity_positive", sql`quantity > 0`),
    check("coupons_issued_range", sql`issued_quantity BETWEEN 0 AND quantity`),
    check("coupons_window", sql`ends_at > starts_at`),
    check("coupons_valid_days_positive", sql`valid_days >= 1`),
  ],
);

export const userCoupons = sqliteTable(
  "user_coupons",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id),
    couponId: integer("coupon_id")
      .notNull()
      .references(() => coupons.id),
    issuedAt: integer("issued_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    usedAt: integer("used_at"),
    /** The order that used this coupon; NULL while unused. */
    orderId: integer("order_id"),
  },
  (t) => [
    uniqueIndex("user_coupons_user_coupon_uq").on(t.userId, t.couponId),
    index("user_coupons_coupon_id_idx").on(t.couponId),
    // A user's coupons a page at a time: user_id = ? AND id > ? ORDER BY id is a range of this index (rowid rides along).
    index("user_coupons_user_id_idx").on(t.userId),
    // The console's issuances-per-second chart: coupon_id = ? AND issued_at in [from, to) is a range of this
    // covering index (GET /admin/coupons/{couponId}/issuances reads the wins in its span, nothing else).
    index("user_coupons_coupon_issued_idx").on(t.couponId, t.issuedAt),
    check("user_coupons_used_consistent", sql`(used_at IS NULL) = (order_id IS NULL)`),
  ],
);

/**
 * PENDING and FAILED are internal placement states (the saga allocates the
 * order id before reserving stock); the API only ever shows the other four.
 */
export const ORDER_STATUSES = ["PENDING", "NOT_PAID", "PAID", "EXPIRED", "CANCELLED", "FAILED"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const orders = sqliteTable(
  "orders",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id),
    userCouponId: integer("user_coupon_id").references(() => userCoupons.id),
    status: text("status", { enum: ORDER_STATUSES }).notNull(),
    itemsAmount: integer("items_amount").notNull(),
    discountAmount: integer("discount_amount").notNull().default(0),
    totalAmount: integer("total_amount").notNull(),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    paidAt: integer("paid_at"),
    closedAt: integer("closed_at"),
    updatedAt: integer("updated_at").notNull(),
    /** The settle sweep retries this order no earlier than this (backoff after a failed settlement). */
    settleAfter: integer("settle_after").notNull().default(0),
    /** Failed settlement attempts so far (the backoff grows with it). */
    settleAttempts: integer("settle_attempts").notNull().default(0),
    /**
     * The Idempotency-Key of the placement that recorded this attempt: while it is PENDING, a twin with the
     * same key is told "in progress" instead of racing it (and storing a refusal of its own under the key).
     */
    idempotencyKey: text("idempotency_key"),
  },
  (t) => [
    index("orders_user_id_idx").on(t.userId, t.id),
    // GET /orders?userId=&status=: a page of one status is a range of this index (newest first), not a sort of the
    // user's whole history. The unfiltered list keeps orders_user_id_idx (user_id, id).
    index("orders_user_status_idx").on(t.userId, t.status, t.id),
    index("orders_status_expires_idx").on(t.status, t.expiresAt),
    // The foreign key from orders to user_coupons: without it every user_coupons insert scans orders.
    index("orders_user_coupon_id_idx").on(t.userCouponId),
    // Only terminal orders whose stock objects were not told yet (normally a few, for seconds): the settle
    // sweep reads them by next-attempt time without scanning closed history. Its WHERE must match the sweep's.
    index("orders_unsettled_idx")
      .on(t.settleAfter, t.id)
      .where(sql`status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND closed_at IS NULL`),
    // FAILED placement attempts by age, for the purge (orders.repo purgeFailed): its range holds only the attempts
    // past their retention, never the paid history. Partial, so only failed attempts pay for it.
    index("orders_failed_idx").on(t.updatedAt).where(sql`status = 'FAILED'`),
    check("orders_status", sql`status IN ('PENDING','NOT_PAID','PAID','EXPIRED','CANCELLED','FAILED')`),
    check(
      "orders_amounts",
      sql`items_amount >= 0 AND discount_amount BETWEEN 0 AND items_amount AND total_amount = items_amount - discount_amount`,
    ),
    check("orders_paid_at", sql`(status = 'PAID') = (paid_at IS NOT NULL)`),
  ],
);

export const orderItems = sqliteTable(
  "order_items",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    orderId: integer("order_id")
      .notNull()
      .references(() => orders.id),
    productId: integer("product_id")
      .notNull()
      .references(() => products.id),
    quantity: integer("quantity").notNull(),
    /** Price snapshot at placement. */
    unitPrice: integer("unit_price").notNull(),
    amount: integer("amount").notNull(),
    /** Copied from the order on payment so "paid quantity per product over a window" is one index range scan. */
    paidAt: integer("paid_at"),
    /** The product's stock shard that holds this line's reservation (sold or released there). */
    stockShard: integer("stock_shard").notNull().default(0),
  },
  (t) => [
    uniqueIndex("order_items_order_product_uq").on(t.orderId, t.productId),
    index("order_items_paid_at_product_idx").on(t.paidAt, t.productId, t.quantity),
    check("order_items_quantity_range", sql`quantity BETWEEN 1 AND 1000`),
    check("order_items_unit_price_positive", sql`unit_price > 0`),
    check("order_items_amount", sql`amount = unit_price * quantity`),
  ],
);

export const OUTBOX_STATUSES = ["PENDING", "PUBLISHED"] as const;

export const outbox = sqliteTable(
  "outbox",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    eventId: text("event_id").notNull(),
    type: text("type").notNull(),
    aggregateId: text("aggregate_id").notNull(),
    payload: text("payload").notNull(),
    status: text("status", { enum: OUTBOX_STATUSES }).notNull().default("PENDING"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: integer("next_attempt_at").notNull(),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    publishedAt: integer("published_at"),
  },
  (t) => [
    uniqueIndex("outbox_event_id_uq").on(t.eventId),
    index("outbox_status_next_idx").on(t.status, t.nextAttemptAt, t.id),
    check("outbox_status", sql`status IN ('PENDING','PUBLISHED')`),
  ],
);

export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    userId: integer("user_id").notNull(),
    key: text("key").notNull(),
    /** Method and route the key was used on, so one key cannot be replayed across routes. */
    scope: text("scope").notNull(),
    requestHash: text("request_hash").notNull(),
    /** NULL while the first request is still running. */
    statusCode: integer("status_code"),
    responseBody: text("response_body"),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index("idempotency_keys_expires_idx").on(t.expiresAt)],
);

/** The daily best-seller refresh writes one row per rank for its business day. */
export const bestSellerSnapshots = sqliteTable(
  "best_seller_snapshots",
  {
    businessDate: text("business_date").notNull(),
    rank: integer("rank").notNull(),
    productId: integer("product_id").notNull(),
    sales: integer("sales").notNull(),
    fromDate: text("from_date").notNull(),
    toDate: text("to_date").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.businessDate, t.rank] }), check("best_seller_snapshots_rank", sql`rank BETWEEN 1 AND 100`)],
);

/**
 * A table whose only purpose is to abort a D1 batch: `INSERT INTO batch_guards(ok)
 * SELECT 0 WHERE NOT (<precondition>)` inserts nothing when the precondition
 * holds and violates the CHECK (aborting the whole batch) when it does not.
 * No request path uses it any more: charges, payments and placements share batches
 * with other requests (src/shared/group-commit.ts), where an abort would roll back
 * the neighbours too, so their guards are conditions in SQL. Kept for batches that
 * are one request's alone.
 */
export const batchGuards = sqliteTable(
  "batch_guards",
  {
    ok: integer("ok").notNull(),
    reason: text("reason"),
  },
  (_t) => [check("batch_guards_ok", sql`ok = 1`)],
);

/** Events the consumer delivered to the data platform: makes redelivery of a duplicate message a no-op. */
export const eventDeliveries = sqliteTable(
  "event_deliveries",
  {
    eventId: text("event_id").primaryKey(),
    type: text("type").notNull(),
    deliveredAt: integer("delivered_at").notNull(),
  },
  // Retention (events/retention.job.ts) reads only the records past it, never the whole table.
  (t) => [index("event_deliveries_delivered_at_idx").on(t.deliveredAt)],
);

/** Messages that exhausted their retries (written by the dead-letter queue's consumer); admins replay them. */
export const deadLetters = sqliteTable(
  "dead_letters",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    eventId: text("event_id").notNull(),
    type: text("type").notNull(),
    payload: text("payload").notNull(),
    attempts: integer("attempts").notNull(),
    createdAt: integer("created_at").notNull(),
    replayedAt: integer("replayed_at"),
  },
  (t) => [
    index("dead_letters_event_id_idx").on(t.eventId),
    // Retention deletes replayed letters by age; partial, so letters awaiting an admin cost nothing.
    index("dead_letters_replayed_at_idx").on(t.replayedAt).where(sql`replayed_at IS NOT NULL`),
    // The operator console's backlog count: letters awaiting an admin, by id (partial: replayed history is not in it).
    index("dead_letters_waiting_idx").on(t.id).where(sql`replayed_at IS NULL`),
  ],
);
