/**
 * The ledger (docs/SHARDING.md, "One transfer" and "Shard 0 is the reserve"): the persisted half
 * of the protocol, on the shard object's own SQLite. Owns the tables `shard_ledger` (move counter,
 * id sequence, this shard's drain flag and epoch), `transfers_out` (grants this shard gave, by
 * transfer id), `transfers_in` (transfers this shard asked for and has not closed), `acks_due`,
 * `pushes_out`, `pushes_in` and `sibling_drain` (shard 0's newest word from each sibling).
 * Synchronous only: every method runs inside the object's transaction, together with the change
 * of free units it implies (it calls `LedgerHost.adjust` itself). The network half is balancer.ts.
 */
import { siblingsOf } from "./routing";
import { decideGrant } from "./rules";
import type { GiveAnswer, GiveRequest, PushRequest } from "./transfer";

/** Finished outbound transfers are kept this long so a receiver's late re-send still finds its grant. */
export const TRANSFER_RETENTION_MS = 30 * 86_400_000;

/**
 * Direction of the two transfer tables: `transfers_out` holds the grants this shard gave
 * (`to_shard` is the receiver); `transfers_in` the transfers this shard asked for and has
 * not closed (`from_shard` is the giver). A `GiveRequest` names its `receiver`.
 */
const LEDGER_SCHEMA = `
CREATE TABLE IF NOT EXISTS shard_ledger (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  moves INTEGER NOT NULL,
  seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO shard_ledger (id, moves, seq) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS pushes_in (
  transfer_id TEXT PRIMARY KEY,
  units INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pushes_out (
  transfer_id TEXT PRIMARY KEY,
  units INTEGER NOT NULL CHECK (units > 0)
);
CREATE TABLE IF NOT EXISTS sibling_drain (
  shard INTEGER PRIMARY KEY,
  epoch INTEGER NOT NULL,
  drained INTEGER NOT NULL,
  hold_transfer TEXT
);
CREATE TABLE IF NOT EXISTS transfers_out (
  transfer_id TEXT PRIMARY KEY,
  to_shard INTEGER NOT NULL,
  granted INTEGER NOT NULL CHECK (granted >= 0),
  acked INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_out_unacked ON transfers_out (acked) WHERE acked = 0;
CREATE INDEX IF NOT EXISTS transfers_out_at ON transfers_out (at);
CREATE TABLE IF NOT EXISTS transfers_in (
  transfer_id TEXT PRIMARY KEY,
  from_shard INTEGER NOT NULL,
  need INTEGER NOT NULL,
  extra INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks_due (
  transfer_id TEXT PRIMARY KEY,
  to_shard INTEGER NOT NULL
);
`;

/** The object a ledger lives in: its free units, changed only inside its transactions. */
export interface LedgerHost {
  /** Free units now. */
  available(): number;
  /** Adds `delta` (negative: takes) to the free units; the ledger never takes more than `available()`. */
  adjust(delta: number): void;
}

/** A transfer this shard opened: the giver asked, and the request re-sent unchanged until it closes. */
export type OpenTransfer = { giver: number; request: GiveRequest };

/** Columns of `shard_ledger` added by issue 19 (an object of before holds none of them: it is not drained). */
const DRAIN_COLUMNS: [name: string, ddl: string][] = [
  ["drained", "ALTER TABLE shard_ledger ADD COLUMN drained INTEGER NOT NULL DEFAULT 0"],
  ["epoch", "ALTER TABLE shard_ledger ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0"],
];

type Counters = { moves: number; seq: number; drained: number; epoch: number };

/**
 * The persisted half of the protocol, on the object's SQLite. Every method is
 * synchronous and must run inside the object's `transactionSync`, together with
 * the change of free units it implies (it calls `LedgerHost.adjust` itself).
 */
export class ShardLedger {
  private counters: Counters | undefined;
  private openCount: number | undefined;
  private dueCount: number | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly host: LedgerHost,
  ) {}

  /** Creates the tables, and adds the drain columns to a ledger that predates them (idempotent). */
  createSchema(): void {
    this.sql.exec(LEDGER_SCHEMA);
    const have = new Set(
      this.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('shard_ledger')")
        .toArray()
        .map((c) => c.name),
    );
    for (const [name, ddl] of DRAIN_COLUMNS) if (!have.has(name)) this.sql.exec(ddl);
    this.invalidate();
  }

  /** Forgets the memory copies (after a transaction rolled back). */
  invalidate(): void {
    this.counters = undefined;
    this.openCount = undefined;
    this.dueCount = undefined;
  }

  get moves(): number {
    return this.read().moves;
  }

  /** Whether a transfer this shard asked for is still open (its grant may be on its way). */
  hasOpen(): boolean {
    this.openCount ??= this.count("SELECT count(*) AS n FROM transfers_in");
    return this.openCount > 0;
  }

  /** Whether recovery work is left: a transfer to re-send, an acknowledgement or a push to send. */
  needsRecovery(): boolean {
    this.dueCount ??= this.count("SELECT (SELECT count(*) FROM acks_due) + (SELECT count(*) FROM pushes_out) AS n");
    return this.hasOpen() || this.dueCount > 0;
  }

  /** This shard's drain state (a shard i > 0): drained, and the epoch of that word. */
  drainState(): { drained: boolean; epoch: number } {
    const c = this.read();
    return { drained: c.drained === 1, epoch: c.epoch };
  }

  /**
   * Giving side. Invariant: a transfer id is granted once; a repeat returns the
   * recorded grant and takes nothing. A grant never exceeds the free units.
   * `decide(free)` is the grant of a first request (default: `decideGrant`); a
   * gathering request (`req.gather`: shard 0 ran short) takes every free unit and
   * leaves this shard drained (a new epoch). `granted` says what was given.
   */
  give(req: GiveRequest, now: number, decide?: (free: number) => number, granted?: (units: number) => void): GiveAnswer {
    const known = this.recorded(req.transferId);
    let units = known ?? 0;
    if (known === undefined) {
      const free = this.host.available();
      if (decide) units = Math.min(free, Math.max(0, decide(free)));
      // Shard 0 gathering (it ran short): everything, and drained.
      else if (req.gather) units = Math.max(0, free);
      else units = decideGrant(free, req.need, req.extra);
      this.sql.exec(
        "INSERT INTO transfers_out (transfer_id, to_shard, granted, acked, at) VALUES (?, ?, ?, ?, ?)",
        req.transferId,
        req.receiver,
        units,
        units > 0 ? 0 : 1,
        now,
      );
      if (units > 0) {
        this.host.adjust(-units);
        this.bumpMoves();
      }
      if (req.gather && this.host.available() === 0) this.setDrained(true);
      granted?.(units);
      // Bounded pruning of long-finished transfers (a receiver re-sends only while its transfer is open).
      this.sql.exec(
        "DELETE FROM transfers_out WHERE transfer_id IN (SELECT transfer_id FROM transfers_out WHERE at < ? AND acked = 1 LIMIT 10)",
        now - TRANSFER_RETENTION_MS,
      );
    }
    return this.answerWith(units);
  }

  /** The grant recorded under a transfer id, if any. */
  recorded(transferId: string): number | undefined {
    return this.sql.exec<{ granted: number }>("SELECT granted FROM transfers_out WHERE transfer_id = ?", transferId).toArray()[0]?.granted;
  }

  /** The giver's answer with its current state, for a grant of `granted`. */
  answerWith(granted: number): GiveAnswer {
    const { drained, epoch } = this.drainState();
    const openIds = this.hasOpen()
      ? this.sql
          .exec<{ transfer_id: string }>("SELECT transfer_id FROM transfers_in LIMIT 64")
          .toArray()
          .map((r) => r.transfer_id)
      : [];
    return { granted, available: this.host.available(), moves: this.moves, drained, epoch, openIds };
  }

  /** Giving side: the receiver applied these grants. Idempotent. */
  acknowledge(transferIds: string[]): void {
    for (const id of transferIds) this.sql.exec("UPDATE transfers_out SET acked = 1 WHERE transfer_id = ?", id);
  }

  /**
   * Receiving side, before asking: one open transfer per giver, persisted. With `reuse`, a
   * giver that already has an open transfer from this shard is asked again under the same
   * id (so whatever it granted is applied once, whenever its answer arrives); without, each
   * call opens a transfer of its own (concurrent claims to shard 0 each have their own id).
   */
  open(givers: number[], self: number, need: number, extra: number, now: number, reuse = true): OpenTransfer[] {
    const existing = reuse ? new Map(this.openTransfers(self).map((t) => [t.giver, t])) : new Map<number, OpenTransfer>();
    return givers.map((giver) => {
      const open = existing.get(giver);
      if (open) return open;
      const seq = this.read().seq + 1;
      this.sql.exec("UPDATE shard_ledger SET seq = ? WHERE id = 1", seq);
      this.counters = { ...this.read(), seq };
      const request: GiveRequest = { transferId: `${self}:${seq}`, receiver: self, need, extra };
      this.sql.exec(
        "INSERT INTO transfers_in (transfer_id, from_shard, need, extra, at) VALUES (?, ?, ?, ?, ?)",
        request.transferId,
        giver,
        need,
        extra,
        now,
      );
      this.openCount = undefined;
      return { giver, request };
    });
  }

  /**
   * Receiving side, with the giver's answer: applies the grant if the transfer is
   * still open and closes it (owing the giver an acknowledgement for a positive
   * grant); a duplicate answer finds it closed and applies nothing. Returns the
   * units applied.
   */
  close(giver: number, request: GiveRequest, answer: Pick<GiveAnswer, "granted">): number {
    const closed = this.sql.exec("DELETE FROM transfers_in WHERE transfer_id = ?", request.transferId).rowsWritten;
    if (closed === 0) return 0;
    this.openCount = undefined;
    if (answer.granted <= 0) return 0;
    this.host.adjust(answer.granted);
    this.bumpMoves();
    this.sql.exec("INSERT OR IGNORE INTO acks_due (transfer_id, to_shard) VALUES (?, ?)", request.transferId, giver);
    this.dueCount = undefined;
    return answer.granted;
  }

  /** The transfers this shard opened and has not closed (re-sent after a crash). */
  openTransfers(self: number): OpenTransfer[] {
    return this.sql
      .exec<{ transfer_id: string; from_shard: number; need: number; extra: number }>(
        "SELECT transfer_id, from_shard, need, extra FROM transfers_in ORDER BY transfer_id",
      )
      .toArray()
      .map((r) => ({ giver: r.from_shard, request: { transferId: r.transfer_id, receiver: self, need: r.need, extra: r.extra } }));
  }

  /** Acknowledgements owed, by giver. */
  dueAcks(): Map<number, string[]> {
    const due = new Map<number, string[]>();
    for (const r of this.sql.exec<{ transfer_id: string; to_shard: number }>("SELECT transfer_id, to_shard FROM acks_due").toArray()) {
      due.set(r.to_shard, [...(due.get(r.to_shard) ?? []), r.transfer_id]);
    }
    return due;
  }

  /** The giver took these acknowledgements. */
  acksSent(transferIds: string[]): void {
    for (const id of transferIds) this.sql.exec("DELETE FROM acks_due WHERE transfer_id = ?", id);
    this.dueCount = undefined;
  }

  /**
   * A drained shard that holds free units again (a release, a rollback, a grant its
   * waiter did not use) hands them to shard 0: taken out here and recorded as a push
   * under an id, in one step; the shard stays drained. Returns the pushes not yet
   * taken by shard 0 (this one and any a failure left).
   */
  pushIfHolding(self: number): PushRequest[] {
    const free = this.host.available();
    if (this.read().drained === 1 && free > 0) {
      const seq = this.read().seq + 1;
      this.sql.exec("UPDATE shard_ledger SET seq = ? WHERE id = 1", seq);
      this.counters = { ...this.read(), seq };
      this.sql.exec("INSERT INTO pushes_out (transfer_id, units) VALUES (?, ?)", `${self}:p${seq}`, free);
      this.host.adjust(-free);
      this.bumpMoves();
      this.dueCount = undefined;
    }
    return this.sql
      .exec<{ transfer_id: string; units: number }>("SELECT transfer_id, units FROM pushes_out")
      .toArray()
      .map((r) => ({ transferId: r.transfer_id, sender: self, units: r.units }));
  }

  /** Shard 0 took this push. */
  pushed(transferId: string): void {
    this.sql.exec("DELETE FROM pushes_out WHERE transfer_id = ?", transferId);
    this.dueCount = undefined;
  }

  /** Shard 0: a sibling's push, applied once per id (a repeat adds nothing). */
  accept(transferId: string, units: number, now: number): void {
    const added = this.sql.exec(
      "INSERT OR IGNORE INTO pushes_in (transfer_id, units, at) VALUES (?, ?, ?)",
      transferId,
      units,
      now,
    ).rowsWritten;
    if (added > 0 && units > 0) {
      this.host.adjust(units);
      this.bumpMoves();
    }
    this.sql.exec(
      "DELETE FROM pushes_in WHERE transfer_id IN (SELECT transfer_id FROM pushes_in WHERE at < ? LIMIT 10)",
      now - TRANSFER_RETENTION_MS,
    );
  }

  /**
   * Shard 0: what a sibling said of itself, kept only when newer than what it said before. A
   * "drained" said while the batch shard 0 last handed it was still on its way (its transfer
   * open there) is not believed: the batch will be at rest there.
   */
  noteSibling(shard: number, epoch: number, drained: boolean, openIds: string[] = []): void {
    if (drained && openIds.length > 0) {
      const hold = this.sql
        .exec<{ t: string | null }>("SELECT hold_transfer AS t FROM sibling_drain WHERE shard = ?", shard)
        .toArray()[0]?.t;
      if (hold && openIds.includes(hold)) drained = false;
    }
    this.sql.exec(
      `INSERT INTO sibling_drain (shard, epoch, drained) VALUES (?1, ?2, ?3)
       ON CONFLICT (shard) DO UPDATE SET epoch = excluded.epoch, drained = excluded.drained WHERE excluded.epoch > sibling_drain.epoch`,
      shard,
      epoch,
      drained ? 1 : 0,
    );
  }

  /** Shard 0 handed `shard` a batch beyond its need (transfer `transferId`): it will hold units at rest. */
  siblingHolds(shard: number, transferId: string): void {
    this.sql.exec(
      `INSERT INTO sibling_drain (shard, epoch, drained, hold_transfer) VALUES (?1, -1, 0, ?2)
       ON CONFLICT (shard) DO UPDATE SET drained = 0, hold_transfer = excluded.hold_transfer`,
      shard,
      transferId,
    );
  }

  /** A shard i > 0 applied a batch beyond its need from shard 0 (which already counts it as holding): not drained. */
  heldByGrant(): void {
    if (this.read().drained === 1) this.setDrained(false);
  }

  /** Shard 0: the siblings (of `shards`) not known to be drained. */
  undrainedSiblings(shards: number): number[] {
    const drained = new Set(
      this.sql
        .exec<{ shard: number }>("SELECT shard FROM sibling_drain WHERE drained = 1 AND shard < ?", shards)
        .toArray()
        .map((r) => r.shard),
    );
    return siblingsOf(0, shards).filter((s) => !drained.has(s));
  }

  /** Shard 0: every sibling is drained (none holds a free unit at rest). */
  allDrained(shards: number): boolean {
    return this.undrainedSiblings(shards).length === 0;
  }

  private setDrained(drained: boolean): void {
    const c = this.read();
    const epoch = c.epoch + 1;
    this.sql.exec("UPDATE shard_ledger SET drained = ?, epoch = ? WHERE id = 1", drained ? 1 : 0, epoch);
    this.counters = { ...c, drained: drained ? 1 : 0, epoch };
  }

  private count(query: string): number {
    return this.sql.exec<{ n: number }>(query).one().n;
  }

  private read(): Counters {
    this.counters ??= this.sql.exec<Counters>("SELECT moves, seq, drained, epoch FROM shard_ledger WHERE id = 1").one();
    return this.counters;
  }

  private bumpMoves(): void {
    const moves = this.read().moves + 1;
    this.sql.exec("UPDATE shard_ledger SET moves = ? WHERE id = 1", moves);
    this.counters = { ...this.read(), moves };
  }
}
