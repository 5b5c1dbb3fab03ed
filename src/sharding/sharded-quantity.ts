/**
 * Sharded quantity (docs/ARCHITECTURE.md §9, docs/SHARDING.md): one countable quantity (a
 * coupon's units, a product's stock) split over K Durable Objects, written once
 * and used by the CouponIssuer and the ProductStock.
 *
 * Each shard holds part of the quantity and decides alone, synchronously, for
 * the callers routed to it (a coupon's users by `homeShard`, a product's orders
 * by `orderShard`). Shard 0 is the reserve: a shard i > 0 that cannot cover a
 * request asks shard 0 only (a *claim*: one call), and shard 0 either grants it
 * or answers that nothing is left anywhere; when shard 0 itself lacks units it
 * *gathers* them from its siblings in one parallel round, in which every sibling
 * gives everything it holds and becomes *drained*.
 *
 * Invariants (the tests in test/coupons/coupon-shards*.test.ts, the stock shard
 * storms and test/storms/sellout-churn.storm.test.ts check them):
 * - **Conservation.** A unit is in exactly one place: free at one shard, spent
 *   there, or granted by a giver and not yet applied by its receiver (an open
 *   transfer, persisted on both sides). A transfer moves units, never makes them.
 * - **Exactly once.** A transfer has an id the receiver persists *before* it
 *   asks (`ShardLedger.open`); the giver records its grant under that id in the
 *   same transaction that takes the units, and answers a repeat of the id with
 *   the recorded grant and takes nothing. The receiver applies a grant only while
 *   its transfer is open, and closes it in the same transaction. So a crash or
 *   eviction of either side at any point, followed by the receiver re-sending its
 *   open transfers (its alarm does), applies every grant exactly once.
 * - **No false "none left".** Shard 0 answers "none left" only when it lacks the
 *   units itself and knows every sibling drained (`ShardLedger.allDrained`): a
 *   drained shard holds no free unit at rest: a unit that comes back to it
 *   (a release, a rollback, a late grant) is pushed to shard 0 before that return
 *   completes (`ShardBalancer.returned`). The argument is in docs/SHARDING.md.
 * - **Bounded.** A borrow costs a shard i > 0 one claim, plus shard 0's gathering
 *   round when shard 0 lacks the units: at most 2 nested rounds whatever the churn.
 * - A shard only gives what it holds free: available never goes below 0.
 */

/** Most shard objects per coupon or product. */
export const MAX_SHARDS = 32;
/** Claims (or, at shard 0, gathering rounds) one borrow may make before it gives up with "try again" (never a false "none left"). */
export const MAX_BORROW_ROUNDS = 3;
/** Finished outbound transfers are kept this long so a receiver's late re-send still finds its grant. */
export const TRANSFER_RETENTION_MS = 30 * 86_400_000;

/** Murmur3's 32-bit finaliser: a bijection on 32-bit integers that mixes every input bit into every output bit. */
export function mix32(key: number): number {
  // Fold the bits above 2^32 in (ids are safe integers) so keys 2^32 apart do not collide.
  let h = (key >>> 0) ^ Math.floor(key / 0x1_0000_0000);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The shard a user belongs to (a coupon's "one per user" check is then local to
 * one object). Stable: the same user and K always give the same shard.
 */
export function homeShard(userId: number, shards: number): number {
  return shards <= 1 ? 0 : mix32(userId) % shards;
}

/**
 * The stock shard an order's line reserves on. Order ids are consecutive, so a
 * storm of orders is dealt round-robin; orders.repo computes the same expression
 * in SQL (`order_id % stock_shards`) and stores it on the line.
 */
export function orderShard(orderId: number, shards: number): number {
  return shards <= 1 ? 0 : orderId % shards;
}

/** The object name of shard `shard` of resource `id`: shard 0 keeps the unsharded name, so K = 1 is the object of before. */
export function shardObjectName(id: number, shard: number): string {
  return shard === 0 ? String(id) : `${id}/${shard}`;
}

/** A fair batch of `total` over `shards` (what a shard borrows beyond its need). */
export function fairShare(total: number, shards: number): number {
  return Math.max(1, Math.ceil(total / Math.max(1, shards)));
}

/**
 * How much a giver hands over when asked for `need` units plus a batch of
 * `extra`: all it can of the need, and of the batch at most half of what it
 * would keep (so two hungry shards cannot strip each other bare, and a giver
 * asked by every sibling keeps a share). Pure; never more than `available`.
 */
export function decideGrant(available: number, need: number, extra: number): number {
  if (available <= 0) return 0;
  const forNeed = Math.min(available, Math.max(0, need));
  const forExtra = Math.min(Math.max(0, extra), Math.floor((available - forNeed) / 2));
  return forNeed + forExtra;
}

/**
 * A receiver's request for units. `transferId` is unique per receiver and re-sent unchanged; `from` is the
 * receiver (the asker). `gather`: shard 0 gathering: a giver that cannot give all of `need` gives everything
 * and reports itself drained.
 */
export interface GiveRequest {
  transferId: string;
  from: number;
  need: number;
  extra: number;
  gather?: boolean;
}

/** A giver's answer: what it granted under the id, and its state. */
export interface GiveAnswer {
  granted: number;
  /** Free units the giver kept. */
  available: number;
  /** The giver's move counter (positive grants and receipts), monotonic (diagnostics). */
  moves: number;
  /** The giver holds no free unit at rest and tells shard 0 before it holds one again (a shard i > 0). */
  drained: boolean;
  /** The giver's drain epoch: bumped by every change of `drained`, so shard 0 keeps only the newest word. */
  epoch: number;
  /** Shard 0's answer to a claim: it lacks the need and every sibling is drained (nothing is left anywhere). */
  dry?: boolean;
  /** Sequential rounds shard 0 waited for before answering a claim (its gathering round), for the hop count. */
  rounds?: number;
  /** The transfers the giver itself has open (a claim whose grant has not reached it yet). */
  openIds?: string[];
}

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

type OpenTransfer = { giver: number; request: GiveRequest };

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
    const have = new Set(this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('shard_ledger')").toArray().map((c) => c.name));
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
        req.from,
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
      ? this.sql.exec<{ transfer_id: string }>("SELECT transfer_id FROM transfers_in LIMIT 64").toArray().map((r) => r.transfer_id)
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
      const request = { transferId: `${self}:${seq}`, from: self, need, extra };
      this.sql.exec("INSERT INTO transfers_in (transfer_id, from_shard, need, extra, at) VALUES (?, ?, ?, ?, ?)", request.transferId, giver, need, extra, now);
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
      .map((r) => ({ giver: r.from_shard, request: { transferId: r.transfer_id, from: self, need: r.need, extra: r.extra } }));
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
  pushIfHolding(self: number): { transferId: string; units: number }[] {
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
    return this.sql.exec<{ transfer_id: string; units: number }>("SELECT transfer_id, units FROM pushes_out").toArray().map((r) => ({ transferId: r.transfer_id, units: r.units }));
  }

  /** Shard 0 took this push. */
  pushed(transferId: string): void {
    this.sql.exec("DELETE FROM pushes_out WHERE transfer_id = ?", transferId);
    this.dueCount = undefined;
  }

  /** Shard 0: a sibling's push, applied once per id (a repeat adds nothing). */
  accept(transferId: string, units: number, now: number): void {
    const added = this.sql.exec("INSERT OR IGNORE INTO pushes_in (transfer_id, units, at) VALUES (?, ?, ?)", transferId, units, now).rowsWritten;
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
      const hold = this.sql.exec<{ t: string | null }>("SELECT hold_transfer AS t FROM sibling_drain WHERE shard = ?", shard).toArray()[0]?.t;
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
      this.sql.exec<{ shard: number }>("SELECT shard FROM sibling_drain WHERE drained = 1 AND shard < ?", shards).toArray().map((r) => r.shard),
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

/** How the balancer reaches a sibling (the object's RPC stubs; tests wrap it to crash mid-transfer). */
export interface SiblingPort {
  give(shard: number, request: GiveRequest): Promise<GiveAnswer>;
  acknowledge(shard: number, transferIds: string[]): Promise<void>;
  /** Hands shard `shard` (0) `units` free units of shard `from` under `transferId` (applied once per id). */
  push(shard: number, from: number, transferId: string, units: number): Promise<void>;
}

/** The object the balancer works for. */
export interface BalancerHost extends LedgerHost {
  /** Runs `body` in one synchronous storage transaction (the object's own wrapper). */
  tx<T>(body: () => T): T;
  /**
   * Makes sure the object's alarm is armed before a transfer is sent, so a transfer
   * left open (or an acknowledgement left unsent) by a crash is finished by the
   * alarm (`ShardBalancer.recover`).
   */
  armRecovery(): Promise<void>;
}

export interface BorrowOutcome {
  /** covered: the shard now holds `need`; dry: nothing is left anywhere (shard 0's word); unknown: gave up (try again). */
  result: "covered" | "dry" | "unknown";
  /** Sequential rounds of sibling calls this borrow waited for (nested hops). */
  rounds: number;
}

/**
 * The asynchronous half: claims to shard 0, shard 0's gathering rounds and its
 * answer to a claim, acknowledgements, pushes of returned units and recovery.
 *
 * Shard 0 is the reserve. A shard i > 0 short of units claims from shard 0 (one
 * call, its own transfer id). Shard 0 grants from what it holds (the need, and a
 * batch beyond it while it holds plenty); when it lacks the need and some sibling
 * may hold units at rest, it gathers first: one round in flight at a time, asking
 * every sibling not known to be drained for everything it holds (each is drained
 * after answering): the last units gather at shard 0. Shard 0 answers
 * "none left" only from its own state: it lacks the need and every sibling is
 * drained. So a borrow costs at most a claim and one gathering round.
 */
export class ShardBalancer {
  /** Shard 0's gathering round in flight (rounds never overlap; concurrent claims join it). */
  private inflight: Promise<void> | undefined;
  /** Units the claims and borrowers waiting at shard 0 lack together (a gathering round asks for all of it). */
  private wanted = 0;

  constructor(
    private readonly host: BalancerHost,
    private readonly ledger: ShardLedger,
    private readonly siblings: () => SiblingPort,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The giving side of a sibling's request (the object's `give` RPC). A shard i > 0
   * answers in one transaction (shard 0 gathering from it). Shard 0 answers a claim:
   * at once if it holds the need or knows every sibling drained, else after one
   * gathering round; it grants the need (and a batch beyond it while it holds enough
   * to hand every shard one, marking the claimer as holding units), or nothing with
   * `dry` when nothing is left anywhere.
   */
  async answer(request: GiveRequest, self: number, shards: number): Promise<GiveAnswer> {
    if (self !== 0) return this.host.tx(() => this.ledger.give(request, this.clock()));
    let rounds = 0;
    const known = this.host.tx(() => this.ledger.recorded(request.transferId));
    for (let attempt = 0; known === undefined && attempt < MAX_BORROW_ROUNDS - 1; attempt++) {
      if (this.host.available() >= request.need || this.ledger.allDrained(shards)) break;
      this.wanted += request.need;
      try {
        await this.gather(shards, request.need, request.extra);
      } finally {
        this.wanted -= request.need;
      }
      rounds++;
    }
    return this.host.tx(() => {
      const need = request.need;
      const undrained = this.ledger.undrainedSiblings(shards).length;
      const dry = this.host.available() < need && undrained === 0;
      // A batch beyond the need only before the end phase (no sibling drained yet) and while shard 0
      // could hand every shard one: once shard 0 had to gather, the last units stay here, where one
      // step decides, instead of resting at a shard that would then have to be drained again.
      const batching = undrained === shards - 1;
      const answer = this.ledger.give(
        request,
        this.clock(),
        // (A new shard's share, need 0, is a batch: taken before the sale, as before.)
        (free) => (free < need ? 0 : batching && (need === 0 || free - need >= request.extra * shards) ? decideGrant(free, need, request.extra) : need),
        (units) => {
          if (units > need) this.ledger.siblingHolds(request.from, request.transferId);
        },
      );
      return { ...answer, dry: answer.granted === 0 && dry, rounds };
    });
  }

  /** The giving side of an acknowledgement (the object's `acknowledge` RPC). */
  acknowledged(transferIds: string[]): void {
    this.host.tx(() => this.ledger.acknowledge(transferIds));
  }

  /** Shard 0: a drained sibling hands back units that came back to it (the object's `push` RPC). Idempotent. */
  accepted(transferId: string, units: number): void {
    this.host.tx(() => this.ledger.accept(transferId, units, this.clock()));
  }

  /**
   * Borrows until this shard holds `need` free units (`covered`), or nothing is left
   * anywhere (`dry`, shard 0's word). Never `dry` on a guess: when calls fail it stops
   * after MAX_BORROW_ROUNDS with `unknown`.
   *
   * `take`, if given, is the caller's decision (its own synchronous transaction): it
   * runs at the very moment the units are seen free, with no await in between, so a
   * concurrent borrower cannot take them first; its value is returned as `taken`.
   */
  async borrow<T = never>(self: number, shards: number, need: number, extra: number, take?: () => T): Promise<BorrowOutcome & { taken?: T }> {
    let rounds = 0;
    const covered = () => (take ? { result: "covered" as const, rounds, taken: take() } : { result: "covered" as const, rounds });
    try {
      for (let attempt = 0; attempt < MAX_BORROW_ROUNDS; attempt++) {
        if (this.host.available() >= need) return covered();
        if (shards <= 1) return { result: "dry", rounds };
        if (self === 0) {
          if (this.ledger.allDrained(shards)) return { result: "dry", rounds };
          this.wanted += need;
          try {
            await this.gather(shards, need, extra);
          } finally {
            this.wanted -= need;
          }
          rounds++;
          continue;
        }
        const answer = await this.claim(self, need, extra);
        rounds += 1 + (answer?.rounds ?? 0);
        // The claim's units were applied in the same synchronous step as this check: no one took them.
        if (this.host.available() >= need) return covered();
        if (answer?.dry) return { result: "dry", rounds };
      }
      if (this.host.available() >= need) return covered();
      return { result: "unknown", rounds };
    } finally {
      // Units this borrow brought and did not use (a take that took nothing) are at rest here now.
      if (self > 0) await this.returned(self).catch(() => undefined);
    }
  }

  /**
   * One claim to shard 0 asking for `extra` units only: a new shard taking its share.
   * Returns the units received.
   */
  async prefetch(self: number, shards: number, extra: number): Promise<number> {
    if (shards <= 1 || extra <= 0 || self === 0) return 0;
    const before = this.host.available();
    await this.claim(self, 0, extra);
    return this.host.available() - before;
  }

  /**
   * Units came back to this shard locally (a release, a rollback, a grant applied late
   * or not used). A drained shard i > 0 hands them to shard 0 before the return
   * completes (so shard 0's "none left" stays true); throws when shard 0 cannot take
   * them (the push stays owed: the alarm, or the caller's retry, sends it).
   */
  async returned(self: number): Promise<void> {
    if (self === 0) return;
    const pushes = this.host.tx(() => this.ledger.pushIfHolding(self));
    if (pushes.length === 0) return;
    const port = this.siblings();
    for (const p of pushes) {
      await port.push(0, self, p.transferId, p.units);
      this.host.tx(() => this.ledger.pushed(p.transferId));
    }
  }

  /**
   * Finishes what a crash left: re-sends every open transfer under its id, then
   * sends the acknowledgements and the pushes owed. Idempotent (a closed
   * transfer is not applied again, an acknowledgement twice is one). True when
   * nothing is left to do.
   */
  async recover(self: number): Promise<boolean> {
    const open = this.host.tx(() => this.ledger.openTransfers(self));
    if (open.length > 0) {
      const port = this.siblings();
      const settled = await Promise.allSettled(open.map((t) => port.give(t.giver, t.request)));
      this.host.tx(() => {
        settled.forEach((s, i) => {
          if (s.status === "fulfilled") this.ledger.close(open[i]!.giver, open[i]!.request, s.value);
        });
      });
    }
    await this.sendAcks();
    await this.returned(self).catch(() => undefined);
    return !this.host.tx(() => this.ledger.needsRecovery());
  }

  /** Whether recovery work is pending (the object keeps its alarm armed while it is). */
  needsRecovery(): boolean {
    return this.ledger.needsRecovery();
  }

  /** Sends the acknowledgements owed; a failure leaves them due (the alarm re-sends). */
  async sendAcks(): Promise<void> {
    const due = this.host.tx(() => this.ledger.dueAcks());
    if (due.size === 0) return;
    const port = this.siblings();
    await Promise.all(
      [...due].map(async ([giver, ids]) => {
        try {
          await port.acknowledge(giver, ids);
          this.host.tx(() => this.ledger.acksSent(ids));
        } catch {
          // left due: the alarm armed before the transfer re-sends it
        }
      }),
    );
  }

  /** A shard i > 0 asks shard 0 for `need` (+ `extra`): its own transfer, applied in the step that sees the answer. */
  private async claim(self: number, need: number, extra: number): Promise<GiveAnswer | undefined> {
    const [t] = this.host.tx(() => this.ledger.open([0], self, need, extra, this.clock(), false));
    await this.host.armRecovery();
    let answer: GiveAnswer;
    try {
      answer = await this.siblings().give(0, t!.request);
    } catch {
      return undefined; // left open: the alarm re-sends it under its id
    }
    const granted = this.host.tx(() => {
      const units = this.ledger.close(0, t!.request, answer);
      if (units > need) this.ledger.heldByGrant();
      return units;
    });
    if (granted > 0) void this.sendAcks().catch(() => undefined);
    return answer;
  }

  /**
   * Shard 0 gathers: one round in flight at a time (a caller joins the one running, and
   * looks again after it); asks every sibling not known to be drained for what the
   * waiting borrowers lack, and notes what each says of itself.
   */
  private async gather(shards: number, need: number, extra: number): Promise<void> {
    if (this.inflight) return this.inflight;
    const round = this.gatherRound(shards, Math.max(1, need, this.wanted - this.host.available()), extra).finally(() => {
      if (this.inflight === round) this.inflight = undefined;
    });
    this.inflight = round;
    return round;
  }

  private async gatherRound(shards: number, need: number, extra: number): Promise<void> {
    const givers = this.host.tx(() => this.ledger.undrainedSiblings(shards));
    if (givers.length === 0) return;
    const transfers = this.host.tx(() => this.ledger.open(givers, 0, need, extra, this.clock()));
    await this.host.armRecovery();
    const port = this.siblings();
    const settled = await Promise.allSettled(transfers.map((t) => port.give(t.giver, { ...t.request, gather: true })));
    let granted = 0;
    this.host.tx(() => {
      settled.forEach((s, i) => {
        const t = transfers[i]!;
        if (s.status !== "fulfilled") return;
        granted += this.ledger.close(t.giver, t.request, s.value);
        this.ledger.noteSibling(t.giver, s.value.epoch, s.value.drained, s.value.openIds);
      });
    });
    // Acknowledge after the answer's work, not before it: the units are already usable here.
    if (granted > 0) void this.sendAcks().catch(() => undefined);
  }
}

/** Every shard of `shards` but `self`. */
export function siblingsOf(self: number, shards: number): number[] {
  return Array.from({ length: shards }, (_, s) => s).filter((s) => s !== self);
}
