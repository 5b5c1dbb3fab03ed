/**
 * Group commit of D1 writes from one Worker isolate (docs/ARCHITECTURE.md §3, §8; docs/PERFORMANCE.md, "Group commit").
 *
 * The D1 primary runs one write transaction at a time, and each costs a fixed ~1.5 ms
 * (the call into the database object and its transaction) however little it does; ten
 * small writes in one batch cost about what two cost alone. So concurrent requests of one
 * kind share batches: per D1 binding (one per isolate) and per kind, one batch is in flight
 * at a time, and every request that arrives meanwhile goes into the next one. An idle queue
 * sends at once: a lone request waits for nothing extra.
 *
 * Owns: the queue, who sends each batch, and how a batch's results are dealt out.
 * Does not own what the statements mean. A batch is one transaction, so a member's
 * statements must never abort it (an abort would roll back every neighbour): their guards
 * are conditions in SQL, and each member reads its own outcome from its own results.
 *
 * Request contexts: a Worker may not use one request's I/O objects from another, and a
 * request whose client went away may be cancelled. So every batch is sent from a live request
 * of the isolate, on that request's own D1 session: by one of its members, or, when members
 * queued behind a batch that just landed, by that batch's sender, which relays their batch
 * at once (after its own answer, kept alive by its `waitUntil`; at most RELAY_BATCHES in a
 * row, so D1 does not idle until a waiting member looks). And no request ever settles a
 * promise that another request awaits: a waiting member resumes only from a timer of its own
 * request, looks at the queue (plain data) and goes on: with its results, or as the sender of
 * the next batch when none is in flight. It first sleeps until the batch in flight is
 * expected to end (the recent batches' duration), then looks every POLL_MIN_MS until that
 * batch is twice as old as expected, then every quarter of its age (at most POLL_MAX_MS):
 * about one wake-up per member and batch in a storm on the bench server.
 *
 * Why not let the sender resolve its members' promises: the runtime's cross-request promise
 * handling (`handle_cross_request_promise_resolution`) runs a continuation in the request that
 * awaits only for promises the runtime tagged with their request, and a promise created by
 * TurboFan-optimized code is untagged. Once the waiting code was hot (after ~8,000 placements
 * of a storm on the bench server), members went on in the sender's request and built their
 * answers there; workerd then failed each with "Cannot perform I/O on behalf of a different
 * request (I/O type: ReadableStreamSource)", a 500 after the app had logged a 201.
 *
 * Failure: when D1 refuses a batch with a constraint error nothing was applied (the
 * transaction rolled back), and that can only be one member's bug, so each member retries
 * alone and only the culprit fails. Any other error may have come after the commit (a lost
 * answer), so nothing is retried: every member gets a D1UnavailableError (503), and resolves
 * the doubt its own way (a read-back on the primary, or the client's Idempotency-Key).
 * Nothing is ever applied twice.
 */

/**
 * Most requests in one batch, and most statements: bounds one transaction's time and size.
 * `stallMs`: a batch in flight longer than this (D1's own query limit is 30 s) is taken as
 * lost with its sender (a request the runtime cancelled never resumes): its members answer
 * D1UnavailableError, and the queue moves on instead of waiting forever.
 */
export const GROUP_LIMITS = { requests: 32, statements: 256, stallMs: 30_000 } as const;

/** What one member learns about the batch its statements went out in. */
export interface SharedBatch {
  /** The results of this member's own statements, in order. */
  results: D1Result[];
  /** Requests whose statements were in the batch (1: alone). */
  size: number;
  /**
   * Whether this member pays the batch's write transaction (src/shared/hops.ts): it sent the
   * batch, or the batch was relayed for it (the previous sender sent it) and it is its oldest member.
   * Exactly one member of a batch pays.
   */
  sent: boolean;
  /** Whether any statement of the batch changed the database. */
  wrote: boolean;
  /** The bookmark of the session that sent the batch, read after it: every member's write is in it. */
  bookmark: string | null;
}

/** One request's part: its statements, and how a batch is sent from its own request. */
export interface GroupMember {
  statements: D1PreparedStatement[];
  /** Sends a batch on this request's D1 session (its I/O context). */
  send(statements: D1PreparedStatement[]): Promise<D1Result[]>;
  /** The session's bookmark, read after a batch it sent. */
  bookmark(): string | null;
  /** Keeps this request alive until a batch it sent has settled (ctx.waitUntil), so a client that goes away cannot strand the others. */
  keepAlive?(work: Promise<unknown>): void;
}

/**
 * A shared batch failed as a whole and may or may not have been applied (D1 unreachable,
 * or its answer lost). Answered 503 with Retry-After; nothing was retried.
 */
export class D1UnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`D1 batch failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "D1UnavailableError";
  }
}

/** True for an error SQLite raised while running the batch: the transaction rolled back, nothing was applied. */
export function isDefiniteAbort(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof Error && /constraint failed/i.test(e.message)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Counters of one queue (a load indicator, and what tests and benchmarks read). */
export interface GroupStats {
  batches: number;
  requests: number;
  largest: number;
  /** Batches refused by a constraint and retried member by member. */
  split: number;
  /** Batches that failed as a whole (every member answered D1UnavailableError). */
  failed: number;
}

/**
 * Shortest and longest sleep of a waiting member between two looks at the queue (its own
 * timer, see the module note). The longest bounds what polling adds to a slow batch's wait,
 * and how late a stalled batch is noticed past `stallMs`.
 */
export const POLL_MIN_MS = 1;
export const POLL_MAX_MS = 25;
/** Batches a sender relays in a row for the members that queued behind it (`relay`). */
const RELAY_BATCHES = 8;
/** The expected duration of a batch before any was measured (ms), and the weight of each new measurement. */
const FIRST_ESTIMATE_MS = 2;
const ESTIMATE_WEIGHT = 0.25;

/** Where a member's wait comes from: the clock and a timer of the caller's own request (test seams). */
export interface GroupTiming {
  now: () => number;
  /** Resolves after `ms` on a timer set by the calling request (so it resumes in that request). */
  sleep: (ms: number) => Promise<void>;
}

const ownTimer = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

type Settled = { kind: "done"; batch: SharedBatch } | { kind: "alone" } | { kind: "failed"; error: unknown };

/** A member in the queue or in a batch. `settled` is plain data written by whoever sent its batch. */
class Waiter {
  settled: Settled | undefined;
  constructor(readonly member: GroupMember) {}
}

/** The queue of one kind of write on one D1 binding. */
export class GroupCommitter {
  readonly stats: GroupStats = { batches: 0, requests: 0, largest: 0, split: 0, failed: 0 };
  private readonly queue: Waiter[] = [];
  /** The batch in flight (its members) and when it was sent, or undefined. */
  private inFlight: { group: Waiter[]; since: number } | undefined;
  private gate: Promise<void> | undefined;
  private queuedWatch: { n: number; resolve: () => void }[] = [];
  private heldWatch: (() => void)[] = [];
  private heldNow = false;
  /** How long a batch is expected to be in flight (ms): a moving average of the batches sent so far. */
  private expectedMs = FIRST_ESTIMATE_MS;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly limits: { requests: number; statements: number; stallMs: number } = GROUP_LIMITS,
    timing: Partial<GroupTiming> = {},
  ) {
    this.now = timing.now ?? (() => Date.now());
    this.sleep = timing.sleep ?? ownTimer;
  }

  /** Members waiting for a batch (not counting one in flight). */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Puts the member's statements in the next batch and resolves with that batch's share.
   * Rejects with D1UnavailableError when the batch failed as a whole (see the module note).
   */
  async submit(member: GroupMember): Promise<SharedBatch> {
    const me = new Waiter(member);
    this.queue.push(me);
    this.noteQueued();
    // Every turn of this loop resumes from this request's own I/O: its D1 call (as the sender) or its timer.
    while (!me.settled) {
      if (!this.inFlight) await this.sendNext(me);
      else {
        await this.sleep(this.pollDelay(this.inFlight.since));
        this.giveUpOnStall();
      }
    }
    const settled: Settled = me.settled;
    if (settled.kind === "done") return settled.batch;
    if (settled.kind === "failed") throw settled.error;
    return this.sendAlone(member);
  }

  /**
   * Test seam: holds every batch after it was formed, before it is sent (a slow D1 call),
   * until the returned function is called.
   */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise<void>((r) => (release = r));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  /** Test seam: resolves once a formed batch waits at a `hold()`. */
  whenHeld(): Promise<void> {
    if (this.heldNow) return Promise.resolve();
    return new Promise((resolve) => this.heldWatch.push(resolve));
  }

  /** Test seam: resolves once at least `n` members wait for a batch. */
  whenQueued(n: number): Promise<void> {
    if (this.queue.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.queuedWatch.push({ n, resolve }));
  }

  /**
   * How long a waiting member sleeps before it looks again, while the batch sent at `since` is
   * in flight: until that batch is expected to be done, then POLL_MIN_MS until it is twice as
   * old as expected, then a quarter of its age (so polling adds at most about a quarter to a
   * long wait), never more than POLL_MAX_MS.
   */
  pollDelay(since: number): number {
    const age = this.now() - since;
    const untilExpected = Math.round(this.expectedMs - age);
    const ms = untilExpected >= POLL_MIN_MS ? untilExpected : age < 2 * this.expectedMs ? POLL_MIN_MS : Math.round(age / 4);
    return Math.min(POLL_MAX_MS, Math.max(POLL_MIN_MS, ms));
  }

  private noteQueued(): void {
    const due = this.queuedWatch.filter((w) => this.queue.length >= w.n);
    this.queuedWatch = this.queuedWatch.filter((w) => this.queue.length < w.n);
    for (const w of due) w.resolve();
  }

  /**
   * A batch in flight past `stallMs` lost its sender: its members fail (their writes may or
   * may not have landed, like any lost answer) and the next batch may go. Should the lost
   * batch still answer, it settles nobody twice and frees nothing (`inFlight` moved on).
   */
  private giveUpOnStall(): void {
    const flight = this.inFlight;
    if (!flight || this.now() - flight.since < this.limits.stallMs) return;
    this.inFlight = undefined;
    this.stats.failed++;
    const error = new D1UnavailableError(
      new Error(`a shared batch was in flight for more than ${this.limits.stallMs} ms: its sender is gone`),
    );
    for (const w of flight.group) w.settled ??= { kind: "failed", error };
  }

  /**
   * Forms the next batch around `sender` (it always rides in the batch it sends) and sends it
   * from the sender's request; then relays the batches of the members that queued meanwhile.
   */
  private async sendNext(sender: Waiter): Promise<void> {
    if (await this.fly(this.take(sender), sender.member, sender)) this.relay(sender.member);
  }

  /**
   * When a batch has landed and members are queued, the request that sent it sends the next
   * batch at once, from its own request (kept alive after its own answer by `keepAlive`), up to
   * RELAY_BATCHES in a row: otherwise D1 would wait for the next waiting member's timer. Its
   * members still go on only from their own timers; the oldest of them pays the write.
   */
  private relay(via: GroupMember): void {
    if (this.inFlight || this.queue.length === 0) return;
    const relays = async () => {
      for (let n = 0; n < RELAY_BATCHES && !this.inFlight && this.queue.length > 0; n++) {
        const group = this.take(this.queue[0]!);
        if (!(await this.fly(group, via, group[0]!))) return;
      }
    };
    // Started here, so the first relayed batch is in flight before anyone can look at the queue.
    const running = relays();
    via.keepAlive?.(running);
  }

  /**
   * Sends `group`'s statements as one batch through `via` (a member's own request and session)
   * and settles every member by writing its `settled` (plain data): each picks that up at its own
   * next timer, never from this request. `payer` is the member that pays the write transaction.
   * True when the batch landed and no longer holds the queue.
   */
  private async fly(group: Waiter[], via: GroupMember, payer: Waiter): Promise<boolean> {
    const flight = { group, since: this.now() };
    this.inFlight = flight;
    let landed = false;
    try {
      if (this.gate) {
        this.heldNow = true;
        for (const resolve of this.heldWatch.splice(0)) resolve();
        await this.gate;
        this.heldNow = false;
      }
      const statements = group.flatMap((w) => w.member.statements);
      const sent = via.send(statements);
      via.keepAlive?.(sent.catch(() => undefined));
      const results = await sent;
      this.expectedMs += ESTIMATE_WEIGHT * (this.now() - flight.since - this.expectedMs);
      const bookmark = via.bookmark();
      const wrote = results.some((r) => r.meta?.changed_db === true || (r.meta?.rows_written ?? 0) > 0);
      let at = 0;
      for (const w of group) {
        const own = results.slice(at, at + w.member.statements.length);
        at += w.member.statements.length;
        w.settled ??= { kind: "done", batch: { results: own, size: group.length, sent: w === payer, wrote, bookmark } };
      }
      landed = true;
    } catch (err) {
      if (group.length > 1 && isDefiniteAbort(err)) {
        this.stats.split++;
        for (const w of group) w.settled ??= { kind: "alone" };
      } else {
        this.stats.failed++;
        const error = group.length === 1 && isDefiniteAbort(err) ? err : new D1UnavailableError(err);
        for (const w of group) w.settled ??= { kind: "failed", error };
      }
    } finally {
      this.stats.batches++;
      this.stats.requests += group.length;
      this.stats.largest = Math.max(this.stats.largest, group.length);
    }
    // A batch given up on (giveUpOnStall) no longer owns the queue. Without a relay, the next batch
    // is sent by whichever waiting member looks first (a cancelled request never looks again: the others do).
    if (this.inFlight !== flight) return false;
    this.inFlight = undefined;
    return landed;
  }

  /** The sender, then the oldest waiters, within the limits. */
  private take(sender: Waiter): Waiter[] {
    this.queue.splice(this.queue.indexOf(sender), 1);
    const group = [sender];
    let statements = sender.member.statements.length;
    while (group.length < this.limits.requests && this.queue.length > 0) {
      const next = this.queue[0]!;
      if (statements + next.member.statements.length > this.limits.statements) break;
      statements += next.member.statements.length;
      group.push(this.queue.shift()!);
    }
    return group;
  }

  /** After a constraint abort of a shared batch: this member's statements alone, from its own request. */
  private async sendAlone(member: GroupMember): Promise<SharedBatch> {
    try {
      const results = await member.send(member.statements);
      const wrote = results.some((r) => r.meta?.changed_db === true || (r.meta?.rows_written ?? 0) > 0);
      return { results, size: 1, sent: true, wrote, bookmark: member.bookmark() };
    } catch (err) {
      throw isDefiniteAbort(err) ? err : new D1UnavailableError(err);
    }
  }
}

/**
 * Whether concurrent requests share batches by default (src/services.ts): in the production
 * runtime, recognised by `handle_cross_request_promise_resolution` (on by compatibility date
 * since 2024-10-14: on Cloudflare and in the bench server), and not in the vitest pool, which
 * turns that flag off for its runner; suites that exercise sharing opt in and drive the app from
 * one request context (test/support/secure-app.ts testApp with `shareWriteBatches: true`).
 * Sharing does not rely on the flag for correctness: no member awaits a promise another request
 * settles (the module note says why the flag would not be enough).
 */
export function runtimeSettlesAcrossRequests(): boolean {
  const flags = (globalThis as { Cloudflare?: { compatibilityFlags?: Record<string, boolean> } }).Cloudflare?.compatibilityFlags;
  return flags?.handle_cross_request_promise_resolution === true;
}

/** One queue per D1 binding (i.e. per isolate) and kind, like src/events/relay-soon.ts. */
const committers = new WeakMap<object, Map<string, GroupCommitter>>();

/** The isolate's queue for `kind` writes on `binding`. */
export function groupCommitter(binding: object, kind: string): GroupCommitter {
  let byKind = committers.get(binding);
  if (!byKind) {
    byKind = new Map();
    committers.set(binding, byKind);
  }
  let committer = byKind.get(kind);
  if (!committer) {
    committer = new GroupCommitter();
    byKind.set(kind, committer);
  }
  return committer;
}

/** Every queue of `binding` in this isolate and its counters (the admin view, benchmarks). */
export function groupStatsOf(binding: object): Record<string, GroupStats> {
  const byKind = committers.get(binding);
  return Object.fromEntries([...(byKind ?? new Map<string, GroupCommitter>())].map(([kind, q]) => [kind, { ...q.stats }]));
}
