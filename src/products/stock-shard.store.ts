import type { LedgerHost } from "../sharding/ledger";
import { rollbackAwareTransaction, type Transaction } from "../shared/object-transaction";
import type { ReleaseResult, Reservation, ReservationStatus, ReserveResult, SellResult } from "./product-stock.types";

/** A held reservation not confirmed within this window is released by the alarm. */
export const HOLD_TTL_MS = 60_000;
/** Finished reservations (sold/released) are kept this long for idempotent retries, then pruned. */
export const FINISHED_RETENTION_MS = 30 * 86_400_000;
/** Rows pruned per change since the last prune (each change finishes at most one), so pruning keeps pace. */
const PRUNE_PER_CHANGE = 20;
/** At most this many rows per prune, so pruning never makes one call slow. */
const PRUNE_MAX = 1_000;
/**
 * A shard prunes at most once per this: the statement costs about as much as the sale it follows
 * (6.5% of the Worker's CPU in a payment storm when every sale pruned), while 30 days of retention
 * leave all the time in the world to drop a row.
 */
export const PRUNE_INTERVAL_MS = 1_000;

export interface StockRow extends Record<string, SqlStorageValue> {
  product_id: number;
  /** This object's shard index (0 = the object named `String(productId)`). */
  shard: number;
  /** The product's shard count as this shard last heard it (only ever raised). */
  shards: number;
  /** The product's stock when this shard loaded: the size of the batches it borrows. */
  hint: number;
  available: number;
  stamp: number;
  projected_stamp: number;
}

export interface ReservationRow extends Record<string, SqlStorageValue> {
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
CREATE INDEX IF NOT EXISTS reservations_status_updated ON reservations (status, updated_at);
DROP INDEX IF EXISTS reservations_updated;
`;

/**
 * Drops a few long-finished reservations (`?1` older than, `?2` at most). Each status is one range
 * of reservations_status_updated, so it reads only rows it deletes: with an index on `updated_at`
 * alone SQLite took (status, expires_at) for the IN list and read every sold or released row of
 * the last 30 days on every sale (9.5% of the Worker's CPU in a payment storm's profile, growing
 * with the product's sales). test/products/product-stock.do.test.ts pins the plan.
 */
export const PRUNE_FINISHED_SQL = `DELETE FROM reservations WHERE order_id IN (
  SELECT order_id FROM reservations WHERE status IN ('sold','released') AND updated_at < ?1 LIMIT ?2)`;

/** Columns added for sharding (issue 13); an object created before them is the product's only shard. */
const SHARD_COLUMNS: [name: string, ddl: string][] = [
  ["shard", "ALTER TABLE stock ADD COLUMN shard INTEGER NOT NULL DEFAULT 0"],
  ["shards", "ALTER TABLE stock ADD COLUMN shards INTEGER NOT NULL DEFAULT 1"],
  ["hint", "ALTER TABLE stock ADD COLUMN hint INTEGER NOT NULL DEFAULT 0"],
];

const toReservation = (r: ReservationRow): Reservation => ({
  orderId: r.order_id,
  quantity: r.quantity,
  status: r.status,
  expiresAt: r.expires_at,
});

/** `reserveLocal`'s answer when this shard holds too little and may borrow. */
export const SHORT = Symbol("short");

/**
 * The persisted half of one ProductStock shard: its stock row (identity, free
 * units, projection stamps) and its reservations, on the object's SQLite.
 * Every method is synchronous and runs inside `tx` (the object's
 * `transactionSync`), so a read-check-write here can never interleave with
 * another request. The row is cached in memory: this object is its only writer.
 */
export class StockShardStore implements LedgerHost {
  private row: StockRow | undefined | null = null;
  /** When this incarnation last pruned, and the settlements since (pruneFinished). */
  private prunedAt = Number.NEGATIVE_INFINITY;
  private changesSincePrune = 0;
  /** Called after a rolled-back transaction, so other memory copies (the ledger's) are dropped too. */
  onRollback: () => void = () => {};

  /** One synchronous transaction; if it throws (rolled back), the memory copies are read again. */
  readonly tx: Transaction;

  constructor(private readonly storage: DurableObjectStorage) {
    this.tx = rollbackAwareTransaction(storage, () => {
      this.row = null;
      this.onRollback();
    });
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  /** Creates the tables, and adds the shard columns to an object that predates them (idempotent). */
  createSchema(): void {
    this.sql.exec(SCHEMA);
    const have = new Set(
      this.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('stock')")
        .toArray()
        .map((c) => c.name),
    );
    for (const [name, ddl] of SHARD_COLUMNS) if (!have.has(name)) this.sql.exec(ddl);
    this.row = null;
  }

  stock(): StockRow | undefined {
    if (this.row === null) {
      this.row = this.sql
        .exec<StockRow>("SELECT product_id, shard, shards, hint, available, stamp, projected_stamp FROM stock WHERE id = 1")
        .toArray()[0];
    }
    return this.row;
  }

  /** First load: this shard's identity and starting units. */
  init(r: {
    productId: number;
    shard: number;
    shards: number;
    hint: number;
    available: number;
    stamp: number;
    projectedStamp: number;
  }): void {
    this.sql.exec(
      "INSERT INTO stock (id, product_id, shard, shards, hint, available, stamp, projected_stamp) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
      r.productId,
      r.shard,
      Math.max(r.shards, r.shard + 1),
      r.hint,
      r.available,
      r.stamp,
      r.projectedStamp,
    );
    this.row = null;
  }

  /** Raises the shard count this shard borrows over. Invariant: never lowered (a lower K would strand reservations). */
  raiseShards(shards: number): void {
    const stock = this.stock();
    if (!stock || !Number.isSafeInteger(shards) || shards <= stock.shards) return;
    this.sql.exec("UPDATE stock SET shards = ? WHERE id = 1", shards);
    this.row = { ...stock, shards };
  }

  /** LedgerHost: free units now (0 before the first load). */
  available(): number {
    return this.stock()?.available ?? 0;
  }

  /** LedgerHost: changes the free units by `delta` and bumps the projection stamp. */
  adjust(delta: number): void {
    this.change(delta);
  }

  /** Changes available by `delta`, bumps the stamp, returns the new value. */
  change(delta: number): number {
    const stock = this.stock()!;
    const stamp = Math.max(Date.now(), stock.stamp + 1);
    const available = stock.available + delta;
    this.sql.exec("UPDATE stock SET available = ?, stamp = ? WHERE id = 1", available, stamp);
    this.row = { ...stock, available, stamp };
    return available;
  }

  /** Whether D1 is behind this shard's value. */
  isDirty(): boolean {
    const stock = this.stock();
    return stock !== undefined && stock.projected_stamp < stock.stamp;
  }

  /** D1 holds the value of `stamp`. */
  markProjected(stamp: number): void {
    this.sql.exec("UPDATE stock SET projected_stamp = max(projected_stamp, ?) WHERE id = 1", stamp);
    this.row = null;
  }

  /** D1's row carries a stamp ahead of ours (edited by hand): move ours past it so the next write lands. */
  stampPast(stamp: number): void {
    this.sql.exec("UPDATE stock SET stamp = max(stamp, ?) WHERE id = 1", stamp + 1);
    this.row = null;
  }

  reservation(orderId: number): ReservationRow | undefined {
    return this.sql
      .exec<ReservationRow>("SELECT order_id, quantity, status, expires_at FROM reservations WHERE order_id = ?", orderId)
      .toArray()[0];
  }

  /**
   * The local decision of `reserve`: a repeat for one order is the same
   * reservation (confirming a hold if asked; a released order stays released),
   * else the units are taken if this shard holds them. SHORT when it does not
   * and siblings exist to borrow from; INSUFFICIENT_STOCK when it is the only shard.
   */
  reserveLocal(orderId: number, quantity: number, now: number, confirmed: boolean): ReserveResult | typeof SHORT {
    const stock = this.stock()!;
    const existing = this.reservation(orderId);
    if (existing) {
      if (existing.status === "released") return { ok: false, code: "ALREADY_RELEASED", available: stock.available };
      if (confirmed && existing.status === "held") {
        this.setStatus(orderId, "confirmed", now);
        return { ok: true, reservation: { ...toReservation(existing), status: "confirmed" }, available: stock.available };
      }
      return { ok: true, reservation: toReservation(existing), available: stock.available };
    }
    if (stock.available < quantity) return stock.shards > 1 ? SHORT : { ok: false, code: "INSUFFICIENT_STOCK", available: stock.available };
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
    const available = this.change(-quantity);
    return { ok: true, reservation: { orderId, quantity, status, expiresAt }, available };
  }

  /** held -> confirmed; a hold past its deadline is released instead. */
  confirmRow(orderId: number, now: number): { ok: true; reservation: Reservation } | { ok: false; code: "HOLD_EXPIRED" | "NOT_RESERVED" } {
    const r = this.reservation(orderId);
    if (!r || r.status === "released") return { ok: false, code: "NOT_RESERVED" };
    if (r.status === "confirmed" || r.status === "sold") return { ok: true, reservation: toReservation(r) };
    if (r.expires_at <= now) {
      this.releaseRow(r, now);
      return { ok: false, code: "HOLD_EXPIRED" };
    }
    this.setStatus(orderId, "confirmed", now);
    return { ok: true, reservation: { ...toReservation(r), status: "confirmed" } };
  }

  /** confirmed|held -> sold for one order. */
  sellRow(orderId: number, now: number): SellResult {
    const r = this.reservation(orderId);
    if (!r) return { ok: false, code: "NOT_RESERVED" };
    if (r.status === "released") return { ok: false, code: "ALREADY_RELEASED" };
    if (r.status !== "sold") this.setStatus(orderId, "sold", now);
    return { ok: true, reservation: { ...toReservation(r), status: "sold" } };
  }

  /** held|confirmed -> released for one order, or a tombstone for an unknown one (a late reserve cannot take stock for it). */
  releaseOne(orderId: number, now: number): ReleaseResult {
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
    if (r.status === "sold") return { ok: false, code: "ALREADY_SOLD" };
    if (r.status === "released") return { ok: true, released: 0 };
    this.releaseRow(r, now);
    return { ok: true, released: r.quantity };
  }

  /**
   * Sells `sellIds` and releases `releaseIds` (in that order, each by the rules of `sellRow` and
   * `releaseOne`), then prunes a few long-finished rows: one settlement step.
   */
  settleRows(sellIds: number[], releaseIds: number[], now: number): { sold: SellResult[]; released: ReleaseResult[] } {
    const sold = sellIds.map((orderId) => this.sellRow(orderId, now));
    const released = releaseIds.map((orderId) => this.releaseOne(orderId, now));
    this.changesSincePrune += sellIds.length + releaseIds.length;
    if (now - this.prunedAt >= PRUNE_INTERVAL_MS) this.pruneFinished(now);
    return { sold, released };
  }

  /** Releases every hold past its deadline; returns the units given back. */
  releaseExpiredHolds(now: number): number {
    const expired = this.sql.exec<ReservationRow>("SELECT * FROM reservations WHERE status = 'held' AND expires_at <= ?", now).toArray();
    let units = 0;
    for (const r of expired) {
      this.releaseRow(r, now);
      units += r.quantity;
    }
    return units;
  }

  /** The earliest hold deadline, if any hold is live. */
  nextHoldExpiry(): number | null {
    return (
      this.sql.exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM reservations WHERE status = 'held'").toArray()[0]?.t ?? null
    );
  }

  /** Units per live status (held, confirmed, sold). */
  sums(): { held: number; confirmed: number; sold: number } {
    const sums = { held: 0, confirmed: 0, sold: 0 };
    const rows = this.sql
      .exec<{ status: ReservationStatus; q: number }>(
        "SELECT status, sum(quantity) AS q FROM reservations WHERE status != 'released' GROUP BY status",
      )
      .toArray();
    for (const row of rows) sums[row.status as keyof typeof sums] = row.q;
    return sums;
  }

  /**
   * Bounds storage: drops long-finished reservations (never held or confirmed ones), as many as
   * PRUNE_PER_CHANGE per change since the last prune, at most PRUNE_MAX. The pace lives in memory:
   * an object that restarts prunes on its first settlement.
   */
  pruneFinished(now: number): void {
    const limit = Math.min(PRUNE_MAX, PRUNE_PER_CHANGE * Math.max(this.changesSincePrune, 1));
    this.sql.exec(PRUNE_FINISHED_SQL, now - FINISHED_RETENTION_MS, limit);
    this.prunedAt = now;
    this.changesSincePrune = 0;
  }

  private setStatus(orderId: number, status: ReservationStatus, now: number): void {
    this.sql.exec("UPDATE reservations SET status = ?, updated_at = ? WHERE order_id = ?", status, now, orderId);
  }

  private releaseRow(r: ReservationRow, now: number): void {
    this.setStatus(r.order_id, "released", now);
    if (r.quantity > 0) this.change(r.quantity);
  }
}
