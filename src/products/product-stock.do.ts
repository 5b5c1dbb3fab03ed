import { DurableObject } from "cloudflare:workers";
import { errorFields, log } from "../shared/logger";
import { primaryD1 } from "../db/client";
import type {
  ConfirmResult,
  Reservation,
  ReservationStatus,
  ReleaseResult,
  ReserveResult,
  RestockResult,
  SellResult,
  SettleManyResult,
  StockSnapshot,
} from "./product-stock.types";

export type * from "./product-stock.types";

/** A held reservation not confirmed within this window is released by the alarm. */
export const HOLD_TTL_MS = 60_000;
/** Finished reservations (sold/released) are kept this long for idempotent retries, then pruned. */
export const FINISHED_RETENTION_MS = 30 * 86_400_000;
/** Rows pruned per change, so pruning never makes one call slow. */
const PRUNE_BATCH = 20;
/** Retry delay of the write-behind projection when a D1 write failed. */
const FLUSH_RETRY_MS = 500;
/** The D1 projection (`products.stock`) trails the object by about this much under load. */
export const PROJECTION_DELAY_MS = 50;

interface StockRow extends Record<string, SqlStorageValue> {
  product_id: number;
  available: number;
  stamp: number;
  projected_stamp: number;
}
interface ReservationRow extends Record<string, SqlStorageValue> {
  order_id: number;
  quantity: number;
  status: ReservationStatus;
  expires_at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS stock (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  product_id INTEGER NOT NULL,
  available INTEGER NOT NULL CHECK (available >= 0),
  stamp INTEGER NOT NULL,
  projected_stamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
  order_id INTEGER PRIMARY KEY,
  quantity INTEGER NOT NULL CHECK (quantity >= 0),
  status TEXT NOT NULL CHECK (status IN ('held','confirmed','sold','released')),
  expires_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_status_expires ON reservations (status, expires_at);
CREATE INDEX IF NOT EXISTS reservations_updated ON reservations (updated_at);
`;

const toReservation = (r: ReservationRow): Reservation => ({
  orderId: r.order_id,
  quantity: r.quantity,
  status: r.status,
  expiresAt: r.expires_at,
});

/**
 * The source of truth for one product's available stock (DESIGN §3), named
 * `idFromName(String(productId))`. Every decision is read-check-write inside
 * one `transactionSync` on the object's SQLite, with no await in between, so
 * concurrent callers can never both take the last unit. A reservation lives
 * held -> confirmed -> sold, or -> released; every transition is keyed by the
 * order id and idempotent. `products.stock` in D1 is a projection written
 * after the decision is persisted, guarded by a monotonic stamp in
 * `products.updated_at` so late or retried writes never roll it back.
 * Business outcomes are returned as discriminated unions, never thrown.
 */
export class ProductStock extends DurableObject<Env> {
  /**
   * D1 through a primary session: the first load must read the latest stock (a replica could
   * hand back an old value and re-create sold units), and the projection writes check their
   * own stamps. One session for the object's lifetime keeps those queries in order.
   */
  private readonly d1 = primaryD1(this.env.DB);
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    void ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(SCHEMA);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /**
   * Memory copies of persisted state (this object is the only writer of both): the
   * stock row (`null` = read it again) and the alarm time. They save the storage reads
   * that were a sixth of an order storm's Worker CPU (docs/PERFORMANCE.md).
   */
  private row: StockRow | undefined | null = null;
  private alarmAt: number | null | undefined;

  /**
   * Takes `quantity` for `orderId`: as a held reservation that times out after
   * HOLD_TTL_MS, or, with `confirmed`, as a confirmed one in the same call (order
   * placement does this: its PENDING order row exists before the call, and the
   * stale-placement cron releases what a dead placement took). Invariant:
   * available never goes below 0, and one order holds at most one reservation per
   * product (a repeat returns the existing one, confirming a hold if asked; an
   * order already released cannot be resurrected by a late retry).
   */
  async reserve(productId: number, orderId: number, quantity: number, now: number, confirmed = false): Promise<ReserveResult> {
    if (!Number.isSafeInteger(quantity) || quantity <= 0) return { ok: false, reason: "INVALID_QUANTITY", available: 0 };
    if (!(await this.ensureStock(productId))) return { ok: false, reason: "PRODUCT_NOT_FOUND", available: 0 };
    const result = this.tx((): ReserveResult => {
      const stock = this.stock()!;
      const existing = this.reservation(orderId);
      if (existing) {
        if (existing.status === "released") return { ok: false, reason: "ALREADY_RELEASED", available: stock.available };
        if (confirmed && existing.status === "held") {
          this.sql.exec("UPDATE reservations SET status = 'confirmed', updated_at = ? WHERE order_id = ?", now, orderId);
          return { ok: true, reservation: { ...toReservation(existing), status: "confirmed" }, available: stock.available };
        }
        return { ok: true, reservation: toReservation(existing), available: stock.available };
      }
      if (stock.available < quantity) return { ok: false, reason: "INSUFFICIENT_STOCK", available: stock.available };
      const expiresAt = now + HOLD_TTL_MS;
      const status: ReservationStatus = confirmed ? "confirmed" : "held";
      this.sql.exec(
        "INSERT INTO reservations (order_id, quantity, status, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        orderId,
        quantity,
        status,
        expiresAt,
        now,
      );
      const available = this.adjust(-quantity);
      return { ok: true, reservation: { orderId, quantity, status, expiresAt }, available };
    });
    if (result.ok) await this.afterChange();
    return result;
  }

  /**
   * held -> confirmed, once the order exists for good. Invariant: a hold that
   * timed out is never confirmed (it is released here if the alarm has not run
   * yet), so stock cannot be counted both as available and as reserved.
   */
  async confirm(orderId: number): Promise<ConfirmResult> {
    const now = Date.now();
    const result = this.tx((): ConfirmResult => {
      const r = this.reservation(orderId);
      if (!r || r.status === "released") return { ok: false, reason: "NOT_RESERVED" };
      if (r.status === "confirmed" || r.status === "sold") return { ok: true, reservation: toReservation(r) };
      if (r.expires_at <= now) {
        this.releaseRow(r, now);
        return { ok: false, reason: "HOLD_EXPIRED" };
      }
      this.sql.exec("UPDATE reservations SET status = 'confirmed', updated_at = ? WHERE order_id = ?", now, orderId);
      return { ok: true, reservation: { ...toReservation(r), status: "confirmed" } };
    });
    await this.afterChange();
    return result;
  }

  /**
   * confirmed (or a live hold) -> sold, after the payment committed in D1.
   * Invariant: sold units never return to available; a released reservation
   * is not sold (that would count the units twice), it is reported instead.
   */
  async sell(orderId: number): Promise<SellResult> {
    const now = Date.now();
    const result = this.tx((): SellResult => {
      const r = this.sellRow(orderId, now);
      this.pruneFinished(now);
      return r;
    });
    await this.afterChange();
    return result;
  }

  /**
   * held|confirmed -> released, giving the units back (failure, expiry,
   * cancel). Invariant: units are given back at most once per order; a sold
   * reservation is never released. Releasing an unknown order leaves a
   * tombstone so a reserve that arrives late cannot take stock for it.
   */
  async release(orderId: number): Promise<ReleaseResult> {
    const now = Date.now();
    const result = this.tx((): ReleaseResult => {
      const r = this.releaseOne(orderId, now);
      this.pruneFinished(now);
      return r;
    });
    await this.afterChange();
    return result;
  }

  /**
   * The crons' batched settlement: every id in `sellIds` is sold and every id in
   * `releaseIds` released, with exactly the rules of `sell` and `release`, in one
   * transaction and one round trip (so a sweep costs one call per product, not
   * per order line). Invariant: the same as theirs; an order that cannot take its
   * transition (a PAID order whose units were released, a release of sold units)
   * is reported in `refused` and left as it is, never forced.
   */
  async settleMany(sellIds: number[], releaseIds: number[]): Promise<SettleManyResult> {
    const now = Date.now();
    const result = this.tx((): SettleManyResult => {
      const refused: SettleManyResult["refused"] = [];
      for (const orderId of sellIds) {
        const r = this.sellRow(orderId, now);
        if (!r.ok) refused.push({ orderId, reason: r.reason });
      }
      for (const orderId of releaseIds) {
        const r = this.releaseOne(orderId, now);
        if (!r.ok) refused.push({ orderId, reason: r.reason });
      }
      this.pruneFinished(now);
      return { refused };
    });
    await this.afterChange();
    return result;
  }

  /** confirmed|held -> sold for one order (inside the caller's transaction). */
  private sellRow(orderId: number, now: number): SellResult {
    const r = this.reservation(orderId);
    if (!r) return { ok: false, reason: "NOT_RESERVED" };
    if (r.status === "released") return { ok: false, reason: "ALREADY_RELEASED" };
    if (r.status !== "sold") {
      this.sql.exec("UPDATE reservations SET status = 'sold', updated_at = ? WHERE order_id = ?", now, orderId);
    }
    return { ok: true, reservation: { ...toReservation(r), status: "sold" } };
  }

  /** held|confirmed -> released for one order, or a tombstone for an unknown one (inside the caller's transaction). */
  private releaseOne(orderId: number, now: number): ReleaseResult {
    const r = this.reservation(orderId);
    if (!r) {
      this.sql.exec(
        "INSERT INTO reservations (order_id, quantity, status, expires_at, updated_at) VALUES (?, 0, 'released', ?, ?)",
        orderId,
        now,
        now,
      );
      return { ok: true, released: 0 };
    }
    if (r.status === "sold") return { ok: false, reason: "ALREADY_SOLD" };
    if (r.status === "released") return { ok: true, released: 0 };
    this.releaseRow(r, now);
    return { ok: true, released: r.quantity };
  }

  /**
   * Admin restock (delta > 0) or reduction (delta < 0). Invariant: available
   * never goes below 0; reserved units are not touched.
   */
  async restock(productId: number, delta: number): Promise<RestockResult> {
    if (!Number.isSafeInteger(delta) || delta === 0) return { ok: false, reason: "INVALID_QUANTITY", available: 0 };
    if (!(await this.ensureStock(productId))) return { ok: false, reason: "PRODUCT_NOT_FOUND", available: 0 };
    const result = this.tx((): RestockResult => {
      const stock = this.stock()!;
      if (stock.available + delta < 0) return { ok: false, reason: "INSUFFICIENT_STOCK", available: stock.available };
      return { ok: true, available: this.adjust(delta) };
    });
    if (result.ok) {
      await this.afterChange();
      // An admin change is rare: project it before answering, so the catalogue shows it right away.
      await this.flush();
    }
    return result;
  }

  /** Read-only view for invariant checks and diagnostics. */
  async snapshot(productId: number): Promise<StockSnapshot | undefined> {
    if (!(await this.ensureStock(productId))) return undefined;
    const stock = this.stock()!;
    const sums = { held: 0, confirmed: 0, sold: 0 };
    const rows = this.sql
      .exec<{ status: ReservationStatus; q: number }>(
        "SELECT status, sum(quantity) AS q FROM reservations WHERE status != 'released' GROUP BY status",
      )
      .toArray();
    for (const row of rows) sums[row.status as keyof typeof sums] = row.q;
    return { productId: stock.product_id, available: stock.available, ...sums };
  }

  /**
   * Releases holds that timed out (crash safety: a saga that died between
   * reserve and confirm cannot strand stock) and writes the projection behind.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = null; // the alarm that fired is spent
    if (!this.stock()) return;
    const now = Date.now();
    this.tx(() => {
      const expired = this.sql
        .exec<ReservationRow>("SELECT * FROM reservations WHERE status = 'held' AND expires_at <= ?", now)
        .toArray();
      for (const r of expired) this.releaseRow(r, now);
    });
    // When D1 refused the projection, the next try waits FLUSH_RETRY_MS instead of the usual delay.
    const projected = await this.flush();
    await this.afterChange(projected ? PROJECTION_DELAY_MS : FLUSH_RETRY_MS);
  }

  private stock(): StockRow | undefined {
    if (this.row === null) {
      this.row = this.sql.exec<StockRow>("SELECT product_id, available, stamp, projected_stamp FROM stock WHERE id = 1").toArray()[0];
    }
    return this.row;
  }

  /** One synchronous transaction; if it throws (rolled back), the memory copy is read again. */
  private tx<T>(body: () => T): T {
    try {
      return this.ctx.storage.transactionSync(body);
    } catch (err) {
      this.row = null;
      throw err;
    }
  }

  private reservation(orderId: number): ReservationRow | undefined {
    return this.sql
      .exec<ReservationRow>("SELECT order_id, quantity, status, expires_at FROM reservations WHERE order_id = ?", orderId)
      .toArray()[0];
  }

  /** Changes available by `delta` and bumps the projection stamp; returns the new value. */
  private adjust(delta: number): number {
    const stock = this.stock()!;
    const stamp = Math.max(Date.now(), stock.stamp + 1);
    const available = stock.available + delta;
    this.sql.exec("UPDATE stock SET available = ?, stamp = ? WHERE id = 1", available, stamp);
    this.row = { ...stock, available, stamp };
    return available;
  }

  /** Bounds storage: drops a few long-finished reservations (never held or confirmed ones). */
  private pruneFinished(now: number): void {
    this.sql.exec(
      `DELETE FROM reservations WHERE order_id IN (
         SELECT order_id FROM reservations WHERE updated_at < ? AND status IN ('sold','released') LIMIT ?)`,
      now - FINISHED_RETENTION_MS,
      PRUNE_BATCH,
    );
  }

  private releaseRow(r: ReservationRow, now: number): void {
    this.sql.exec("UPDATE reservations SET status = 'released', updated_at = ? WHERE order_id = ?", now, r.order_id);
    if (r.quantity > 0) this.adjust(r.quantity);
  }

  /**
   * Loads the initial stock from D1 once. blockConcurrencyWhile keeps every
   * other call out while D1 is read, so two first calls cannot both initialise.
   */
  private async ensureStock(productId: number): Promise<boolean> {
    if (this.stock()) return true;
    await this.ctx.blockConcurrencyWhile(async () => {
      if (this.stock()) return;
      const row = await this.d1.prepare("SELECT stock, updated_at FROM products WHERE id = ?")
        .bind(productId)
        .first<{ stock: number; updated_at: number }>();
      if (!row) return;
      this.sql.exec(
        "INSERT INTO stock (id, product_id, available, stamp, projected_stamp) VALUES (1, ?, ?, ?, ?)",
        productId,
        row.stock,
        row.updated_at,
        row.updated_at,
      );
      this.row = null;
    });
    return this.stock() !== undefined;
  }

  /**
   * Arms the alarm for whatever is due: the projection (write-behind, within
   * PROJECTION_DELAY_MS) and the next hold timeout. Invariant: a change is never
   * answered before the alarm that projects it is stored, so a crash or eviction
   * right after the answer still brings D1 up to date. No D1 call is awaited here:
   * a stock change costs its caller one round trip (DESIGN §8).
   */
  private async afterChange(projectWithinMs = PROJECTION_DELAY_MS): Promise<void> {
    if (!this.stock()) return;
    const nextHold = this.sql
      .exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM reservations WHERE status = 'held'")
      .toArray()[0]?.t;
    let at = nextHold ?? null;
    if (this.isDirty()) at = Math.min(at ?? Infinity, Date.now() + projectWithinMs);
    this.alarmAt ??= await this.ctx.storage.getAlarm();
    if (at === null) {
      if (this.alarmAt !== null) await this.ctx.storage.deleteAlarm();
      this.alarmAt = null;
    } else if (this.alarmAt === null || this.alarmAt > at) {
      await this.ctx.storage.setAlarm(at);
      this.alarmAt = at;
    }
  }

  /**
   * Writes the projection now (coalesced: one D1 write in flight per object, later
   * callers ride on the next one); true when D1 holds the current value.
   * Invariant protected: none beyond the projection's (stamp-guarded, idempotent).
   */
  async flush(): Promise<boolean> {
    for (let round = 0; round < 3 && this.isDirty(); round++) {
      this.flushing ??= this.writeProjection().finally(() => {
        this.flushing = undefined;
      });
      if (!(await this.flushing)) return false;
    }
    return !this.isDirty();
  }

  private flushing: Promise<boolean> | undefined;

  private isDirty(): boolean {
    const stock = this.stock();
    return stock !== undefined && stock.projected_stamp < stock.stamp;
  }

  /** Writes the current value; true when D1 took it. */
  private async writeProjection(): Promise<boolean> {
    const stock = this.stock()!;
    try {
      // Absolute value + stamp guard: retries are idempotent and an older write landing late changes nothing.
      const res = await this.d1.prepare("UPDATE products SET stock = ?1, updated_at = ?2 WHERE id = ?3 AND updated_at <= ?2")
        .bind(stock.available, stock.stamp, stock.product_id)
        .run();
      if (res.meta.changes === 0) {
        // updated_at is ahead of our stamp (a newer write of ours, or someone edited the product).
        // Our current value is the newest there is: move the stamp past it so the next round writes it.
        const row = await this.d1.prepare("SELECT updated_at FROM products WHERE id = ?")
          .bind(stock.product_id)
          .first<{ updated_at: number }>();
        if (row && row.updated_at >= stock.stamp) {
          this.sql.exec("UPDATE stock SET stamp = max(stamp, ?) WHERE id = 1", row.updated_at + 1);
          this.row = null;
          return true;
        }
      }
      this.sql.exec("UPDATE stock SET projected_stamp = max(projected_stamp, ?) WHERE id = 1", stock.stamp);
      this.row = null;
      return true;
    } catch (err) {
      log("warn", "stock projection write failed; alarm retries", { productId: stock.product_id, ...errorFields(err) });
      return false;
    }
  }
}
