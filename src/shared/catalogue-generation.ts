/**
 * Owns this isolate's view of the data centre's catalogue generation (the version part of
 * catalogue cache keys, src/shared/cache-policy.ts) and when a write bumps it.
 *
 * The generation lives in the Cache API (per data centre); this isolate re-reads it at most
 * every GENERATION_MEMO_MS. Admin writes bump it at once (they flush what they change to D1
 * before they answer). Sale writes (orders, cancels, payments) are deferred, never dropped:
 * their effect reaches D1 through the stock objects' write-behind projection, so a sale write
 * at `t` is owed a bump once that has settled (`settleMs` after `t`). The request that writes
 * it plans that bump in its own `waitUntil`, unless a bump already planned in this isolate comes
 * late enough to cover it; planned bumps are SALE_BUMP_INTERVAL_MS apart at least. An isolated
 * sale shows `settleMs` after it in this isolate (GENERATION_MEMO_MS more in the data centre's
 * others); under a storm, within `settleMs` + SALE_BUMP_INTERVAL_MS.
 *
 * Each bump runs in the request that planned it, never in a loop another request started: a
 * loop that lived in one request's `waitUntil` and paid for the sales of later requests made
 * workerd fail those requests ("Cannot perform I/O on behalf of a different request") at the
 * K = 8 sell-out of `npm run bench:orders -- --shards 8`. A planned bump is at most
 * `settleMs` + SALE_BUMP_INTERVAL_MS away, far inside the 30 s the runtime gives `waitUntil`.
 */

/** How long this isolate trusts its copy of the generation before it asks the cache again. */
export const GENERATION_MEMO_MS = 500;
/** At most one generation write per this interval for sale writes, per isolate. */
export const SALE_BUMP_INTERVAL_MS = 1_000;
export interface GenerationDeps {
  now: () => number;
  /** Resolves after `ms` (a timer; a test seam). */
  wait: (ms: number) => Promise<void>;
  /** How long after a sale write D1 shows it (the stock projection's lag); 0 when it shows at once. */
  settleMs: number;
}

/** Stores a new generation value in the cache (best effort: resolves also when the cache refuses). */
export type StoreGeneration = (value: string) => Promise<void>;

export class CatalogueGeneration {
  private memo: { value: string; readAt: number } | undefined;
  /** When the latest sale bump planned in this isolate runs (or ran). */
  private planned = Number.NEGATIVE_INFINITY;

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
   * work for the caller to await (admin) or keep alive with its own `waitUntil` (sale), or
   * undefined when a bump already planned runs after this sale has settled.
   */
  changed(kind: "admin" | "sale", store: StoreGeneration): Promise<void> | undefined {
    const t = this.deps.now();
    if (kind === "admin") return this.bump(t, store);
    const settled = t + this.deps.settleMs;
    if (this.planned >= settled) return undefined;
    const due = Math.max(settled, this.planned + SALE_BUMP_INTERVAL_MS);
    this.planned = due;
    return this.bumpAt(due, store);
  }

  private async bumpAt(due: number, store: StoreGeneration): Promise<void> {
    const before = this.deps.now();
    if (before < due) await this.deps.wait(due - before);
    // The wait has served its time even when the clock stands still (a test's frozen `now`).
    await this.bump(Math.max(this.deps.now(), due), store);
  }

  /** A fresh value (distinct even when the clock stands still), seen here at once and stored for the data centre. */
  private bump(at: number, store: StoreGeneration): Promise<void> {
    const value = `${at}.${crypto.randomUUID().slice(0, 8)}`;
    this.memo = { value, readAt: at };
    return store(value);
  }
}
