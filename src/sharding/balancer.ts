/**
 * The balancer (docs/SHARDING.md, "Shard 0 is the reserve"): the asynchronous half of the
 * protocol. Owns the network steps: a shard i > 0's claim to shard 0, shard 0's gathering round
 * and its answer to a claim, acknowledgements, pushes of returned units, and recovery of what a
 * crash left (re-sent under the same ids). Every storage step goes through the ledger
 * (ledger.ts) inside the host's transaction; the siblings are reached through a `SiblingPort`.
 *
 * Invariants (docs/SHARDING.md gives the argument; test/coupons/coupon-shards.test.ts,
 * test/coupons/coupon-shards.findings.test.ts, test/storms/stock-shard-transfers.test.ts,
 * test/storms/sharded-stock.storm.test.ts and test/storms/sellout-churn.storm.test.ts check them):
 * - **Conservation.** A unit is in exactly one place: free at one shard, spent there, or granted
 *   by a giver and not yet applied by its receiver (an open transfer, persisted on both sides).
 * - **Exactly once.** The receiver persists a transfer's id before it asks; the giver records its
 *   grant under that id in the transaction that takes the units and answers a repeat with the
 *   recorded grant; the receiver applies a grant only while its transfer is open.
 * - **No false "none left".** Shard 0 answers `dry` only when it lacks the need and knows every
 *   sibling drained (`ShardLedger.allDrained`); a drained shard pushes a unit that comes back to
 *   it to shard 0 before that return completes (`ShardBalancer.returned`). No proof over rounds.
 * - **Bounded.** A borrow costs a shard i > 0 one claim, plus shard 0's gathering round when
 *   shard 0 lacks the units: at most 2 nested rounds whatever the churn.
 */
import type { LedgerHost, ShardLedger } from "./ledger";
import { decideGrant } from "./rules";
import type { ShardAddress } from "./routing";
import type { GiveAnswer, GiveRequest, PushRequest, SiblingPort } from "./transfer";

/** Claims (or, at shard 0, gathering rounds) one borrow may make before it gives up with "try again" (never a false "none left"). */
export const MAX_BORROW_ROUNDS = 3;

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

/** What `borrow` is asked: this shard's address, the units it must hold, a batch beyond them, and the caller's decision. */
export interface BorrowRequest<T> {
  /** This shard and the resource's shard count. */
  at: ShardAddress;
  /** Free units this shard must hold when `borrow` answers `covered`. */
  need: number;
  /** A batch asked for beyond the need (shard 0 grants it only while it holds plenty). */
  extra: number;
  /** The caller's decision, run in the step that sees the units free (see `borrow`). */
  take?: () => T;
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
  async answer(request: GiveRequest, at: ShardAddress): Promise<GiveAnswer> {
    const { shard: self, shards } = at;
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
        (free) =>
          free < need
            ? 0
            : batching && (need === 0 || free - need >= request.extra * shards)
              ? decideGrant(free, need, request.extra)
              : need,
        (units) => {
          if (units > need) this.ledger.siblingHolds(request.receiver, request.transferId);
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
  accepted(push: PushRequest): void {
    this.host.tx(() => this.ledger.accept(push.transferId, push.units, this.clock()));
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
  async borrow<T = never>({ at, need, extra, take }: BorrowRequest<T>): Promise<BorrowOutcome & { taken?: T }> {
    const { shard: self, shards } = at;
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
  async prefetch({ at, extra }: { at: ShardAddress; extra: number }): Promise<number> {
    const { shard: self, shards } = at;
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
      await port.push(0, p);
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
