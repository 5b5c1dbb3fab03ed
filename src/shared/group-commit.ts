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
 * request whose client went away may be cancelled. So every batch is sent by one of its own
 * members, from its own request and on its own D1 session, while the others only wait on a
 * promise. When a batch ends, the oldest waiters are woken; the first one whose request
 * still runs sends the next batch (a member whose request was cancelled never wakes; the
 * others' own nap timers bound how long that could hold the queue).
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
  /** Whether this member sent the batch: it pays the write transaction (src/shared/hops.ts). */
  sent: boolean;
  /** Whether any statement of the batch changed the database. */
  wrote: boolean;
  /** The sender's session bookmark after the batch: every member's write is in it. */
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

/** Longest a queued member naps before it looks at the queue again (see `Waiter.nap`). */
const NAP_MS = 1_000;
/** Waiters woken when a batch ends, to send the next one (the first to run does). */
const NEXT_SENDERS = 2;

type Settled = { kind: "done"; batch: SharedBatch } | { kind: "alone" } | { kind: "failed"; error: unknown };

class Waiter {
  settled: Settled | undefined;
  private wake: (() => void) | undefined;
  constructor(readonly member: GroupMember) {}
  /**
   * Resolves at the next wake-up (a batch ended), or after `NAP_MS` at the latest. The timer
   * is this request's own pending event: without one, the runtime takes a request that only
   * awaits a promise another request will settle for hung, and cancels it. It also bounds
   * how long a lost wake-up could hold a member back.
   */
  async nap(): Promise<void> {
    if (this.settled) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(() => this.rouse(), NAP_MS);
      });
    } finally {
      // Here, in this request's own context: a timer is an I/O object of the request that set it.
      clearTimeout(timer);
    }
  }
  rouse(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
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

  constructor(private readonly limits: { requests: number; statements: number; stallMs: number } = GROUP_LIMITS) {}

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
    while (!me.settled) {
      if (!this.inFlight) await this.sendNext(me);
      else {
        await me.nap();
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
    if (!flight || Date.now() - flight.since < this.limits.stallMs) return;
    this.inFlight = undefined;
    this.stats.failed++;
    const error = new D1UnavailableError(
      new Error(`a shared batch was in flight for more than ${this.limits.stallMs} ms: its sender is gone`),
    );
    for (const w of flight.group) {
      w.settled ??= { kind: "failed", error };
      w.rouse();
    }
  }

  /** Forms the next batch around `sender` (it always rides in the batch it sends) and sends it from the sender's request. */
  private async sendNext(sender: Waiter): Promise<void> {
    const group = this.take(sender);
    const flight = { group, since: Date.now() };
    this.inFlight = flight;
    try {
      if (this.gate) {
        this.heldNow = true;
        for (const resolve of this.heldWatch.splice(0)) resolve();
        await this.gate;
        this.heldNow = false;
      }
      const statements = group.flatMap((w) => w.member.statements);
      const sent = sender.member.send(statements);
      sender.member.keepAlive?.(sent.catch(() => undefined));
      const results = await sent;
      const bookmark = sender.member.bookmark();
      const wrote = results.some((r) => r.meta?.changed_db === true || (r.meta?.rows_written ?? 0) > 0);
      let at = 0;
      for (const w of group) {
        const own = results.slice(at, at + w.member.statements.length);
        at += w.member.statements.length;
        w.settled ??= { kind: "done", batch: { results: own, size: group.length, sent: w === sender, wrote, bookmark } };
      }
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
      // A batch given up on (giveUpOnStall) no longer owns the queue.
      if (this.inFlight === flight) this.inFlight = undefined;
      for (const w of group) w.rouse();
      // The next sender: the oldest waiter, and one spare in case its request is gone (a cancelled
      // request never wakes). Everyone else naps on: the batch they ride in wakes them, and their
      // own timer bounds the wait if every woken one is gone.
      for (const w of this.queue.slice(0, NEXT_SENDERS)) w.rouse();
    }
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
 * Whether concurrent requests may share batches here: only when the runtime runs a promise's
 * continuations in the request that created it, however another request settled it
 * (`handle_cross_request_promise_resolution`, on by compatibility date since 2024-10-14, so on
 * Cloudflare and in the bench server). Without it a member would go on in the sender's request
 * and touch its own request's I/O from there. The vitest pool turns it off for its runner, so
 * tests that exercise sharing drive the app from one request context (test/support/secure-app.ts
 * testApp with `shareWriteBatches: true`), where no continuation crosses requests.
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
