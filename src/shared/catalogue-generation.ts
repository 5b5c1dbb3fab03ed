/**
 * Owns this isolate's view of the data centre's catalogue generation (the version part of
 * catalogue cache keys, src/shared/cache-policy.ts) and when a write bumps it.
 *
 * The generation lives in the Cache API (per data centre); this isolate re-reads it at most
 * every GENERATION_MEMO_MS. Admin writes bump it at once (they flush what they change to D1
 * before they answer). Sale writes (orders, cancels, payments) are deferred, never dropped:
 * their effect reaches D1 through the stock objects' write-behind projection, so a sale write
 * at `t` is owed a bump once that has settled (`settleMs` after `t`), and one timer per
 * isolate pays what is owed, at most once per SALE_BUMP_INTERVAL_MS. An isolated sale shows
 * `settleMs` after it in this isolate (GENERATION_MEMO_MS more in the data centre's others);
 * under a storm, a sale shows within `settleMs` + SALE_BUMP_INTERVAL_MS.
 */

/** How long this isolate trusts its copy of the generation before it asks the cache again. */
export const GENERATION_MEMO_MS = 500;
/** At most one generation write per this interval for sale writes, per isolate. */
export const SALE_BUMP_INTERVAL_MS = 1_000;
/** A bump owed for one sale may wait this much longer to cover the sales right after it (place, then cancel). */
export const SALE_POSTPONE_MS = 250;
/**
 * A timer runs inside the `waitUntil` of the request that started it, which the runtime cuts
 * 30 s after the answer: a sale write this long after the timer started starts a new one in
 * its own request (the old one stops at its next wake), so no timer lives near that limit.
 */
export const BUMP_TIMER_BUDGET_MS = 10_000;

export interface GenerationDeps {
  now: () => number;
  /** Resolves after `ms` (a timer; a test seam). */
  wait: (ms: number) => Promise<void>;
  /** How long after a sale write D1 shows it (the stock projection's lag); 0 when it shows at once. */
  settleMs: number;
}

/** Stores a new generation value in the cache (best effort: resolves also when the cache refuses). */
export type StoreGeneration = (value: string) => Promise<void>;

interface BumpTimer {
  startedAt: number;
}

export class CatalogueGeneration {
  private memo: { value: string; readAt: number } | undefined;
  private lastSaleBump = Number.NEGATIVE_INFINITY;
  /** Sale writes no bump has covered yet: when the earliest and the latest of them have settled in D1. */
  private owed: { first: number; last: number } | undefined;
  private timer: BumpTimer | undefined;

  constructor(private readonly deps: GenerationDeps) {}

  /** The generation a read at `at` is versioned by: the memo while fresh, else what `readStored` finds ("0" when nothing). */
  async read(at: number, readStored: () => Promise<string | undefined>): Promise<string> {
    if (this.memo && at - this.memo.readAt < GENERATION_MEMO_MS) return this.memo.value;
    const value = (await readStored()) ?? "0";
    this.memo = { value, readAt: at };
    return value;
  }

  /**
   * Records a successful catalogue-changing write (after its answer is final). Returns the
   * work for the caller to await (admin) or keep alive with `waitUntil` (sale), or undefined
   * when the timer already running pays this sale too.
   */
  changed(kind: "admin" | "sale", store: StoreGeneration): Promise<void> | undefined {
    const t = this.deps.now();
    if (kind === "admin") return this.bump(t, store);
    const settled = t + this.deps.settleMs;
    this.owed = { first: this.owed?.first ?? settled, last: Math.max(this.owed?.last ?? settled, settled) };
    if (this.timer && t < this.timer.startedAt + BUMP_TIMER_BUDGET_MS) return undefined;
    const timer: BumpTimer = { startedAt: t };
    this.timer = timer;
    return this.payOwed(timer, store);
  }

  /** The timer: bumps once everything owed has settled (or the first owed has waited SALE_POSTPONE_MS), paced by SALE_BUMP_INTERVAL_MS. */
  private async payOwed(timer: BumpTimer, store: StoreGeneration): Promise<void> {
    let waitedUntil = -Infinity;
    try {
      while (this.owed && this.timer === timer) {
        const due = Math.max(Math.min(this.owed.last, this.owed.first + SALE_POSTPONE_MS), this.lastSaleBump + SALE_BUMP_INTERVAL_MS);
        // A wait that ran to `due` has served its time even when the clock stands still (a test's
        // frozen `now`); without this the loop would wait for the clock forever.
        const t = waitedUntil >= due ? Math.max(this.deps.now(), due) : this.deps.now();
        if (t < due) {
          await this.deps.wait(due - t);
          waitedUntil = due;
          continue;
        }
        this.lastSaleBump = t;
        // Sales whose effect settles after `t` are still owed (a storm): the next bump, a pace later.
        this.owed = this.owed.last <= t ? undefined : { first: t, last: this.owed.last };
        await this.bump(t, store);
      }
    } finally {
      if (this.timer === timer) this.timer = undefined;
    }
  }

  /** A fresh value (distinct even when the clock stands still), seen here at once and stored for the data centre. */
  private bump(at: number, store: StoreGeneration): Promise<void> {
    const value = `${at}.${crypto.randomUUID().slice(0, 8)}`;
    this.memo = { value, readAt: at };
    return store(value);
  }
}
