/**
 * Sharded quantity (docs/ARCHITECTURE.md §9): one countable quantity (a coupon's units, a
 * product's stock) split over K Durable Objects, written once and used by the
 * CouponIssuer and the ProductStock.
 *
 * Each shard holds part of the quantity and decides alone, synchronously, for
 * the callers routed to it (a coupon's users by `homeShard`, a product's orders
 * by `orderShard`). A shard that cannot cover a request borrows from its
 * siblings: it asks each one, in parallel, for what it lacks plus a batch, and
 * each giver decides in one synchronous step how much it hands over.
 *
 * Invariants (the tests in test/shared/sharded-quantity.test.ts and the K = 8
 * storms check them):
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
 * - **Acknowledged.** A receiver that applied a positive grant acknowledges it
 *   (persisted as due in the same transaction, sent after, re-sent by its alarm);
 *   until then the giver counts the grant as `unacked`: units possibly in flight.
 * - **No false "none left".** `ShardBalancer.borrow` reports `dry` only after two
 *   complete rounds in a row in which every sibling held and granted nothing, had
 *   no unacknowledged grant out, and made no move in between (its `moves` counter,
 *   bumped by every positive grant and receipt, is unchanged), and the asker has
 *   no transfer open. A unit that moved while the siblings were being asked would
 *   show up in one of those (proof in docs/SHARDING.md), so "dry" means the siblings
 *   really were empty at one instant.
 * - A shard only gives what it holds free: available never goes below 0.
 */

/** Most shard objects per coupon or product. */
export const MAX_SHARDS = 32;
/** Borrow rounds one request may run before it gives up (answering "try again", never a false "none left"). */
export const MAX_BORROW_ROUNDS = 12;
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

/** A receiver's request for units. `transferId` is unique per receiver and re-sent unchanged. */
export interface GiveRequest {
  transferId: string;
  from: number;
  need: number;
  extra: number;
}

/** A giver's answer: what it granted under the id, and its state for the receiver's dryness proof. */
export interface GiveAnswer {
  granted: number;
  /** Free units the giver kept. */
  available: number;
  /** The giver's move counter (positive grants and receipts), monotonic. */
  moves: number;
  /** Positive grants the giver made that their receivers have not acknowledged yet. */
  unacked: number;
  /** Their transfer ids (at most MAX_LISTED_IDS; `unacked` larger than the list means it was cut). */
  unackedIds: string[];
  /** The ids of the transfers the giver itself has open (asked for, answer not applied). */
  openIds: string[];
}

/** Most transfer ids one answer lists. */
export const MAX_LISTED_IDS = 64;

const LEDGER_SCHEMA = `
CREATE TABLE IF NOT EXISTS shard_ledger (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  moves INTEGER NOT NULL,
  seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO shard_ledger (id, moves, seq) VALUES (1, 0, 0);
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

/**
 * The persisted half of the protocol, on the object's SQLite. Every method is
 * synchronous and must run inside the object's `transactionSync`, together with
 * the change of free units it implies (it calls `LedgerHost.adjust` itself).
 */
export class ShardLedger {
  private counters: { moves: number; seq: number } | undefined;
  private openCount: number | undefined;
  private unackedCount: number | undefined;
  private dueCount: number | undefined;

  constructor(
    private readonly sql: SqlStorage,
    private readonly host: LedgerHost,
  ) {}

  /** Creates the tables (idempotent). */
  createSchema(): void {
    this.sql.exec(LEDGER_SCHEMA);
    this.invalidate();
  }

  /** Forgets the memory copies (after a transaction rolled back). */
  invalidate(): void {
    this.counters = undefined;
    this.openCount = undefined;
    this.unackedCount = undefined;
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

  /** Positive grants out that are not acknowledged. */
  unacked(): number {
    this.unackedCount ??= this.count("SELECT count(*) AS n FROM transfers_out WHERE acked = 0");
    return this.unackedCount;
  }

  /** Whether recovery work is left: a transfer to re-send or an acknowledgement to send. */
  needsRecovery(): boolean {
    this.dueCount ??= this.count("SELECT count(*) AS n FROM acks_due");
    return this.hasOpen() || this.dueCount > 0;
  }

  /**
   * Giving side. Invariant: a transfer id is granted once; a repeat returns the
   * recorded grant and takes nothing. A grant never exceeds the free units, less
   * `keep` (units this shard holds for its own waiting borrowers).
   */
  give(req: GiveRequest, now: number, keep = 0): GiveAnswer {
    const known = this.sql.exec<{ granted: number }>("SELECT granted FROM transfers_out WHERE transfer_id = ?", req.transferId).toArray()[0];
    let granted = known?.granted ?? 0;
    if (!known) {
      granted = decideGrant(this.host.available() - Math.max(0, keep), req.need, req.extra);
      this.sql.exec(
        "INSERT INTO transfers_out (transfer_id, to_shard, granted, acked, at) VALUES (?, ?, ?, ?, ?)",
        req.transferId,
        req.from,
        granted,
        granted > 0 ? 0 : 1,
        now,
      );
      if (granted > 0) {
        this.host.adjust(-granted);
        this.bumpMoves();
        this.unackedCount = this.unacked() + 1;
      }
      // Bounded pruning of long-finished transfers (a receiver re-sends only while its transfer is open).
      this.sql.exec(
        "DELETE FROM transfers_out WHERE transfer_id IN (SELECT transfer_id FROM transfers_out WHERE at < ? AND acked = 1 LIMIT 10)",
        now - TRANSFER_RETENTION_MS,
      );
    }
    return this.answerWith(granted);
  }

  /** The giver's answer with its current state, for a grant of `granted`. */
  answerWith(granted: number): GiveAnswer {
    const unacked = this.unacked();
    const unackedIds =
      unacked === 0
        ? []
        : this.sql
            .exec<{ transfer_id: string }>("SELECT transfer_id FROM transfers_out WHERE acked = 0 LIMIT ?", MAX_LISTED_IDS)
            .toArray()
            .map((r) => r.transfer_id);
    const openIds = this.hasOpen()
      ? this.sql.exec<{ transfer_id: string }>("SELECT transfer_id FROM transfers_in LIMIT ?", MAX_LISTED_IDS).toArray().map((r) => r.transfer_id)
      : [];
    return { granted, available: this.host.available(), moves: this.moves, unacked, unackedIds, openIds };
  }

  /** Giving side: the receiver applied these grants. Idempotent. */
  acknowledge(transferIds: string[]): void {
    for (const id of transferIds) this.sql.exec("UPDATE transfers_out SET acked = 1 WHERE transfer_id = ?", id);
    this.unackedCount = undefined;
  }

  /**
   * Receiving side, before asking: one open transfer per giver, persisted. A giver
   * that already has an open transfer from this shard is asked again under the
   * same id (so whatever it granted is applied once, whenever its answer arrives).
   */
  open(givers: number[], self: number, need: number, extra: number, now: number): OpenTransfer[] {
    const existing = new Map(this.openTransfers(self).map((t) => [t.giver, t]));
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

  private count(query: string): number {
    return this.sql.exec<{ n: number }>(query).one().n;
  }

  private read(): { moves: number; seq: number } {
    this.counters ??= this.sql.exec<{ moves: number; seq: number }>("SELECT moves, seq FROM shard_ledger WHERE id = 1").one();
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
  /** covered: the shard now holds `need`; dry: every shard is provably empty; unknown: gave up (try again). */
  result: "covered" | "dry" | "unknown";
  /** Sequential rounds of sibling calls this borrow waited for (nested hops). */
  rounds: number;
}

interface RoundResult {
  granted: number;
  /** Every sibling answered. */
  complete: boolean;
  answers: Map<number, GiveAnswer>;
}

/**
 * The asynchronous half: borrowing rounds, the dryness proof, acknowledgements
 * and recovery. One round is in flight per shard at a time; concurrent borrowers
 * wait for it and then look again (a storm of requests on a dry shard makes one
 * round, not one per request). After a proof of dryness the shard answers "none
 * left" without asking for `dryMemoMs` (units come back only by a restock, a
 * release, a rollback or a quantity raise; `forgetDry` covers the local ones).
 */
export class ShardBalancer {
  private inflight: Promise<RoundResult> | undefined;
  private dryUntil = 0;
  /**
   * The shard's last round if it was complete and brought nothing. Rounds of one shard never
   * overlap, so this and the next such round are "two rounds in a row" for the dryness proof,
   * whichever borrowers started them (a per-borrower proof starves when many wait on one shard).
   */
  private lastEmpty: RoundResult | undefined;
  /** Units the borrowers waiting right now need together (a round asks for all of it). */
  private wanted = 0;

  constructor(
    private readonly host: BalancerHost,
    private readonly ledger: ShardLedger,
    private readonly siblings: () => SiblingPort,
    private readonly dryMemoMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The giving side of a sibling's request (the object's `give` RPC). A shard that is
   * itself borrowing keeps what its own waiters need from askers with a higher index
   * and gives to lower ones: hungry shards never pass the last units back and forth
   * (which kept every dryness proof from settling at a sell-out); the units gather at
   * the lowest hungry shard, which either uses them or proves the rest empty and then
   * lets them go.
   */
  answer(request: GiveRequest, self: number): GiveAnswer {
    const keep = this.wanted > 0 && request.from > self ? this.wanted : 0;
    return this.host.tx(() => this.ledger.give(request, this.clock(), keep));
  }

  /** The giving side of an acknowledgement (the object's `acknowledge` RPC). */
  acknowledged(transferIds: string[]): void {
    this.host.tx(() => this.ledger.acknowledge(transferIds));
  }

  /** Whether a proof of dryness is still fresh (the object may refuse without asking). */
  knownDry(): boolean {
    return this.dryUntil > this.clock();
  }

  /** Units came back to this shard (restock, release, quantity raise): the proof is void. */
  forgetDry(): void {
    this.dryUntil = 0;
  }

  /**
   * Borrows until this shard holds `need` free units (`covered`), or every sibling
   * is provably empty (`dry`). Never `dry` on a guess: when calls fail or units keep
   * moving it stops after MAX_BORROW_ROUNDS with `unknown`.
   *
   * `take`, if given, is the caller's decision (its own synchronous transaction): it
   * runs at the very moment the units are seen free, with no await in between, so a
   * concurrent borrower woken by the same round cannot take them first; its value is
   * returned as `taken`.
   */
  async borrow<T = never>(self: number, shards: number, need: number, extra: number, take?: () => T): Promise<BorrowOutcome & { taken?: T }> {
    this.wanted += need;
    try {
      return await this.borrowRounds(self, shards, need, extra, take);
    } finally {
      this.wanted -= need;
    }
  }

  private async borrowRounds<T>(self: number, shards: number, need: number, extra: number, take?: () => T): Promise<BorrowOutcome & { taken?: T }> {
    let rounds = 0;
    const covered = () => (take ? { result: "covered" as const, rounds, taken: take() } : { result: "covered" as const, rounds });
    for (let attempt = 0; attempt < MAX_BORROW_ROUNDS; attempt++) {
      if (this.host.available() >= need) return covered();
      if (shards <= 1 || this.knownDry()) return { result: "dry", rounds };
      // One round in flight per shard: join it, or start the next one. Ask for what every waiting borrower
      // lacks, not only this one, so a storm on a dry shard is served in few rounds.
      await (this.inflight ?? this.runRound(self, shards, Math.max(1, need, this.wanted - this.host.available()), extra));
      rounds++;
    }
    if (this.host.available() >= need) return covered();
    return { result: this.knownDry() ? "dry" : "unknown", rounds };
  }

  /**
   * One round asking `givers` (default: every sibling) for a batch only: a new shard
   * taking its share. Returns the units received.
   */
  async prefetch(self: number, shards: number, extra: number, givers?: number[]): Promise<number> {
    if (shards <= 1 || extra <= 0) return 0;
    // Rounds of a shard never overlap (the dryness proof counts on it).
    while (this.inflight) await this.inflight;
    return (await this.runRound(self, shards, 0, extra, givers)).granted;
  }

  /**
   * Finishes what a crash left: re-sends every open transfer under its id, then
   * sends the acknowledgements owed. Idempotent (a closed transfer is not applied
   * again, an acknowledgement twice is one). True when nothing is left to do.
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

  private runRound(self: number, shards: number, need: number, extra: number, givers?: number[]): Promise<RoundResult> {
    const round: Promise<RoundResult> = this.round(self, givers ?? siblingsOf(self, shards), need, extra).finally(() => {
      if (this.inflight === round) this.inflight = undefined;
    });
    this.inflight = round;
    return round;
  }

  private async round(self: number, givers: number[], need: number, extra: number): Promise<RoundResult> {
    const transfers = this.host.tx(() => this.ledger.open(givers, self, need, extra, this.clock()));
    await this.host.armRecovery();
    const port = this.siblings();
    const settled = await Promise.allSettled(transfers.map((t) => port.give(t.giver, t.request)));
    const answers = new Map<number, GiveAnswer>();
    let granted = 0;
    this.host.tx(() => {
      settled.forEach((s, i) => {
        const t = transfers[i]!;
        if (s.status !== "fulfilled") return;
        answers.set(t.giver, s.value);
        granted += this.ledger.close(t.giver, t.request, s.value);
      });
    });
    // Acknowledge after the answer's work, not before it: the units are already usable here.
    if (granted > 0) void this.sendAcks().catch(() => undefined);
    const result = { granted, complete: answers.size === transfers.length, answers };
    this.noteRound(result);
    return result;
  }

  /** Proves dryness from this round and the one before it (synchronously, before any waiter resumes). */
  private noteRound(result: RoundResult): void {
    const empty = result.complete && result.granted === 0;
    if (empty && this.lastEmpty && provesDry(this.lastEmpty, result) && !this.host.tx(() => this.ledger.hasOpen())) {
      this.dryUntil = this.clock() + this.dryMemoMs;
    }
    this.lastEmpty = empty ? result : undefined;
  }
}

/** Every shard of `shards` but `self`. */
export function siblingsOf(self: number, shards: number): number[] {
  return Array.from({ length: shards }, (_, s) => s).filter((s) => s !== self);
}

/**
 * Two complete rounds in a row prove every sibling empty when, in both, each held
 * and granted nothing, none moved units in between (move counters unchanged), and
 * no grant either round saw unacknowledged is still open at its receiver in the
 * second round (such a grant may be in flight). A grant acknowledged late is no
 * obstacle: once its receiver has closed the transfer the units are at rest there.
 * Pure.
 */
export function provesDry(first: { answers: Map<number, GiveAnswer> }, second: { answers: Map<number, GiveAnswer> }): boolean {
  if (first.answers.size !== second.answers.size) return false;
  const maybeInFlight = new Set<string>();
  const openNow = new Set<string>();
  for (const [shard, b] of second.answers) {
    const a = first.answers.get(shard);
    if (!a) return false;
    for (const x of [a, b]) {
      if (x.granted > 0 || x.available > 0) return false;
      // A cut list cannot be checked: no proof.
      if (x.unacked > x.unackedIds.length) return false;
      for (const id of x.unackedIds) maybeInFlight.add(id);
    }
    if (b.openIds.length >= MAX_LISTED_IDS) return false;
    for (const id of b.openIds) openNow.add(id);
    if (a.moves !== b.moves) return false;
  }
  for (const id of maybeInFlight) if (openNow.has(id)) return false;
  return true;
}
