import type { LedgerHost } from "../sharding/ledger";
import { rollbackAwareTransaction, type Transaction } from "../shared/object-transaction";
import { decideIssue, type IssueRefusal, type IssuerCoupon } from "./coupon.rules";
import { LOAD_PROGRESS_SCHEMA, type LoadedCoupon } from "./issuance-load";

/**
 * The persisted half of one CouponIssuer shard, on the object's SQLite: its `coupon` row (the
 * coupon's definition, the units this shard holds and issued, its shard and K, the quantity's
 * stamp) and its `issuances` (who got the coupon here, and whether D1 has the row). Every method
 * is synchronous and runs inside `tx`, so a read-check-write here never interleaves with another
 * request. The row is cached in memory: this object is its only writer. The tables exist only
 * once D1 confirmed the coupon (a request for an unknown coupon id leaves no storage behind).
 */
export type CouponRow = {
  id: number;
  quantity: number;
  issued: number;
  starts_at: number;
  ends_at: number;
  valid_days: number;
  quantity_synced: number;
  held: number;
  shard: number;
  shards: number;
  /** Stamp of the last quantity change (monotonic): D1 takes a quantity only over an older stamp. */
  quantity_version: number;
};

/** A user's issuance at this shard. */
export type IssuanceRow = {
  issued_at: number;
  expires_at: number;
  synced: number;
  request_key: string | null;
  user_coupon_id: number | null;
};

/** `issueLocal`'s answer: a new issuance (to project), a twin's answer (with its D1 row id), or a refusal. */
export type LocalIssue =
  | { ok: true; issuedAt: number; expiresAt: number }
  | { ok: true; issuedAt: number; expiresAt: number; userCouponId: number }
  | { ok: false; code: IssueRefusal | "IDEMPOTENCY_KEY_IN_PROGRESS" };

const COUPON_COLUMNS = "id, quantity, issued, starts_at, ends_at, valid_days, quantity_synced, held, shard, shards, quantity_version";

export class CouponShardStore implements LedgerHost {
  private row: CouponRow | undefined;
  /** Whether the tables exist (created when D1 first confirms the coupon). */
  private ready: boolean;
  /** Called after a rolled-back transaction, so other memory copies (the ledger's) are dropped too. */
  onRollback: () => void = () => {};
  /** One synchronous transaction; if it throws (rolled back), the memory copies are read again. */
  readonly tx: Transaction;

  constructor(private readonly storage: DurableObjectStorage) {
    this.ready = this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'coupon'").toArray().length > 0;
    this.tx = rollbackAwareTransaction(storage, () => {
      this.row = this.read();
      this.onRollback();
    });
  }

  get sql(): SqlStorage {
    return this.storage.sql;
  }

  schemaReady(): boolean {
    return this.ready;
  }

  /** The coupon row (cached; undefined before the load finished). The memory copy is dropped after a rolled-back transaction. */
  coupon(): CouponRow | undefined {
    this.row ??= this.read();
    return this.row;
  }

  /** Reads the row again from storage, refreshing the memory copy. */
  reload(): CouponRow | undefined {
    this.row = this.read();
    return this.row;
  }

  /** The stored row, not the memory copy (read-only views: `counts`, `state`). */
  read(): CouponRow | undefined {
    if (!this.ready) return undefined;
    return this.sql.exec<CouponRow>(`SELECT ${COUPON_COLUMNS} FROM coupon`).toArray()[0];
  }

  /** LedgerHost: free units now (held - issued; 0 before the load). */
  available(): number {
    const c = this.row;
    return c ? c.held - c.issued : 0;
  }

  /** LedgerHost: adds `delta` to the units held (the ledger never takes more than `available()`). */
  adjust(delta: number): void {
    this.sql.exec("UPDATE coupon SET held = held + ?", delta);
    this.row = { ...this.row!, held: this.row!.held + delta };
  }

  /** The load's last step: the coupon row (counts as the load found them; D1 already has its quantity). */
  insertCoupon(c: LoadedCoupon): void {
    this.sql.exec(
      `INSERT INTO coupon (${COUPON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, 0)`,
      c.couponId,
      c.quantity,
      c.issued,
      c.startsAt,
      c.endsAt,
      c.validDays,
      c.held,
      c.shard,
      c.shards,
    );
  }

  issuance(userId: number): IssuanceRow | undefined {
    return this.sql
      .exec<IssuanceRow>("SELECT issued_at, expires_at, synced, request_key, user_coupon_id FROM issuances WHERE user_id = ?", userId)
      .toArray()[0];
  }

  /** A new issuance, unsynced, and one more unit issued here (inside the decision's transaction). */
  recordIssuance(userId: number, issuedAt: number, expiresAt: number, requestKey: string | undefined): void {
    const c = this.row!;
    this.sql.exec(
      "INSERT INTO issuances (user_id, issued_at, expires_at, synced, request_key) VALUES (?, ?, ?, 0, ?)",
      userId,
      issuedAt,
      expiresAt,
      requestKey ?? null,
    );
    this.sql.exec("UPDATE coupon SET issued = issued + 1");
    this.row = { ...c, issued: c.issued + 1 };
  }

  /**
   * The local decision of `issue` (run inside `tx`); marks the user in `projecting` (the users
   * whose issuance is being written to D1 right now). `requestKey`: the request's Idempotency-Key,
   * stored with the issuance. A twin under the same key gets the issuance's own answer (its D1
   * row id once written; "in progress" while it is being written), never COUPON_ALREADY_ISSUED:
   * that refusal, stored under the key first, would replace the winner's 201 (issue 19). Another
   * key, or none, hears ALREADY_ISSUED as before.
   */
  issueLocal(userId: number, now: number, requestKey: string | undefined, projecting: Set<number>): LocalIssue {
    // The cached row is the persisted one: this object is its only writer and updates the copy after each write.
    const coupon = this.coupon()!;
    const mine = this.issuance(userId);
    // Not yet confirmed by D1 because an earlier attempt met an outage (not one still in flight):
    // settle it now, whatever the window says.
    if (mine && mine.synced === 0 && !projecting.has(userId)) {
      projecting.add(userId);
      return { ok: true, issuedAt: mine.issued_at, expiresAt: mine.expires_at };
    }
    if (mine && requestKey !== undefined && mine.request_key === requestKey) {
      if (mine.synced === 0 || mine.user_coupon_id === null) return { ok: false, code: "IDEMPOTENCY_KEY_IN_PROGRESS" };
      return { ok: true, issuedAt: mine.issued_at, expiresAt: mine.expires_at, userCouponId: mine.user_coupon_id };
    }
    const d = decideIssue(toIssuerCoupon(coupon), mine !== undefined, now);
    if (!d.ok) return d;
    this.recordIssuance(userId, d.issuedAt, d.expiresAt, requestKey);
    projecting.add(userId);
    return d;
  }

  /** A raise D1 already took: the new quantity and its units, under its stamp. */
  applyRaise(quantity: number, version: number): void {
    const c = this.row!;
    const delta = quantity - c.quantity;
    this.sql.exec("UPDATE coupon SET quantity = ?, held = held + ?, quantity_version = ?", quantity, delta, version);
    this.row = { ...c, quantity, held: c.held + delta, quantity_version: version };
  }

  /** A cut, taken from the units held free; false (nothing changed) when they do not cover it. D1 follows (unsynced). */
  applyCut(quantity: number): boolean {
    const c = this.row!;
    const delta = quantity - c.quantity;
    if (c.held + delta < c.issued) return false;
    this.sql.exec("UPDATE coupon SET quantity = ?, held = held + ?, quantity_synced = 0", quantity, delta);
    this.row = { ...c, quantity, held: c.held + delta, quantity_synced: 0 };
    return true;
  }

  /** D1 may be behind the quantity (a write failed or is owed): the alarm writes it. */
  markQuantityUnsynced(): void {
    this.sql.exec("UPDATE coupon SET quantity_synced = 0");
    this.row = this.read();
  }

  /** Stamps the quantity about to be written to D1. */
  stampQuantity(version: number): void {
    this.sql.exec("UPDATE coupon SET quantity_version = ?", version);
    this.row = { ...this.row!, quantity_version: version };
  }

  /** D1 took `quantity` under `version`: synced, unless a later change overtook it meanwhile. */
  markQuantitySynced(quantity: number, version: number): void {
    this.sql.exec("UPDATE coupon SET quantity_synced = 1 WHERE quantity = ? AND quantity_version = ?", quantity, version);
    this.row = this.read();
  }

  setShards(shards: number): void {
    this.sql.exec("UPDATE coupon SET shards = ?", shards);
    this.row = { ...this.row!, shards };
  }

  /** Whether an issuance still waits for D1's confirmation. */
  hasUnsynced(): boolean {
    return this.sql.exec("SELECT 1 FROM issuances WHERE synced = 0 LIMIT 1").toArray().length > 0;
  }

  /** The users issued here, and how many of them D1 has not confirmed (the state view). */
  issuances(): { users: number[]; unsynced: number } {
    const users = this.sql
      .exec<{ user_id: number }>("SELECT user_id FROM issuances ORDER BY user_id")
      .toArray()
      .map((r) => r.user_id);
    const unsynced = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM issuances WHERE synced = 0").one().n;
    return { users, unsynced };
  }

  /** Creates the tables when D1 first confirms the coupon; `ledgerSchema` adds the transfer ledger's. */
  createSchema(ledgerSchema: () => void): void {
    this.ready = true;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS coupon (
      id INTEGER PRIMARY KEY,
      quantity INTEGER NOT NULL CHECK (quantity >= 1),
      issued INTEGER NOT NULL DEFAULT 0,
      starts_at INTEGER NOT NULL,
      ends_at INTEGER NOT NULL,
      valid_days INTEGER NOT NULL,
      quantity_synced INTEGER NOT NULL DEFAULT 1,
      held INTEGER NOT NULL,
      shard INTEGER NOT NULL DEFAULT 0,
      shards INTEGER NOT NULL DEFAULT 1,
      quantity_version INTEGER NOT NULL DEFAULT 0,
      CHECK (issued BETWEEN 0 AND quantity),
      CHECK (issued <= held)
    )`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS issuances (
      user_id INTEGER PRIMARY KEY,
      issued_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      user_coupon_id INTEGER,
      synced INTEGER NOT NULL DEFAULT 0,
      request_key TEXT
    )`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS issuances_unsynced ON issuances (synced) WHERE synced = 0");
    this.sql.exec(LOAD_PROGRESS_SCHEMA);
    ledgerSchema();
  }

  /**
   * Brings an object of before up to date (when its tables exist). One created before sharding has
   * no `held`, `shard` or `shards` columns and no ledger: it was the coupon's only object, so it
   * holds the whole quantity as shard 0 of 1. `ledgerSchema` creates (or upgrades) the ledger.
   */
  upgradeSchema(ledgerSchema: () => void): void {
    if (!this.ready) return;
    // An object of before the paged load has no progress table (and, having its coupon row, never needs one).
    this.sql.exec(LOAD_PROGRESS_SCHEMA);
    const columns = new Set(
      this.sql
        .exec<{ name: string }>("PRAGMA table_info(coupon)")
        .toArray()
        .map((c) => c.name),
    );
    // Issue 19: the quantity's stamp and the issuance's Idempotency-Key.
    if (!columns.has("quantity_version")) this.sql.exec("ALTER TABLE coupon ADD COLUMN quantity_version INTEGER NOT NULL DEFAULT 0");
    const issuanceColumns = new Set(
      this.sql
        .exec<{ name: string }>("PRAGMA table_info(issuances)")
        .toArray()
        .map((c) => c.name),
    );
    if (!issuanceColumns.has("request_key")) this.sql.exec("ALTER TABLE issuances ADD COLUMN request_key TEXT");
    // A sharded object of before issue 19: its ledger gains the drain state and the push tables (idempotent).
    if (columns.has("held")) {
      ledgerSchema();
      return;
    }
    this.storage.transactionSync(() => {
      this.sql.exec("ALTER TABLE coupon ADD COLUMN held INTEGER NOT NULL DEFAULT 0");
      this.sql.exec("UPDATE coupon SET held = quantity");
      this.sql.exec("ALTER TABLE coupon ADD COLUMN shard INTEGER NOT NULL DEFAULT 0");
      this.sql.exec("ALTER TABLE coupon ADD COLUMN shards INTEGER NOT NULL DEFAULT 1");
      ledgerSchema();
    });
  }
}

function toIssuerCoupon(row: CouponRow): IssuerCoupon {
  // A shard decides on the units it holds: "quantity remains" means it holds one free.
  return { quantity: row.held, issued: row.issued, startsAt: row.starts_at, endsAt: row.ends_at, validDays: row.valid_days };
}
