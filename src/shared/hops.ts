/**
 * Round-trip accounting (docs/ARCHITECTURE.md §8): every D1 call (a query or a batch) and
 * every Durable Object RPC a request makes is counted, timed, and folded into
 * the request's *sequential depth*, the number of round trips a client waits
 * for one after another. Calls that overlap in time (a parallel fan-out) are
 * one step. A callee may report round trips it made before answering (a
 * CouponIssuer writing D1), which lengthen the step it belongs to by the most
 * any overlapping callee reported.
 *
 * D1 is also a metered budget: one single-threaded primary that every request,
 * object and cron shares, billed per row. Every D1 result carries
 * `meta.rows_read` / `meta.rows_written`; the meter sums them, and counts the
 * *write transactions* (a batch, or a lone statement, that changed the
 * database), so what a request or a job costs D1 is visible next to its hops.
 *
 * Redis calls are counted and timed too, but are not hops: Redis is an
 * optional cache whose calls are bounded by a short timeout, and the budgets
 * are about D1 and the objects.
 */
export type CallKind = "d1" | "do" | "redis";

const KINDS: readonly CallKind[] = ["d1", "do", "redis"];

/** One shared D1 batch a request's writes went out in (src/shared/group-commit.ts). */
export interface SharedBatchNote {
  kind: string;
  size: number;
  sent: boolean;
}

/** What D1 did for one unit of work: calls, rows read and written, write transactions. */
export interface D1Cost {
  calls: number;
  rowsRead: number;
  rowsWritten: number;
  writeTx: number;
}

/** The part of a D1 result's `meta` the meter reads (local D1 and Cloudflare's both send these). */
type D1Meta = { rows_read?: number; rows_written?: number; changed_db?: boolean; changes?: number } | undefined;

export class HopMeter {
  readonly calls: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  readonly ms: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  /** Round trips made by callees before they answered (part of the depth, not of `calls`). */
  readonly nestedCalls: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  /** Whether the edge cache answered (public catalogue reads only; src/shared/edge-cache.ts). */
  cache: "hit" | "miss" | "bypass" | undefined = undefined;
  /** Rows D1 reported reading, over every call of this meter. */
  rowsRead = 0;
  /** Rows D1 reported writing (table and index rows, as D1 bills them). */
  rowsWritten = 0;
  /**
   * D1 calls (a batch is one transaction) that changed the database. A batch shared by
   * several requests (src/shared/group-commit.ts) is counted once, by the request that sent it.
   */
  writeTx = 0;
  /** Shared D1 batches this request's writes went out in: kind, requests in the batch, whether it sent it. */
  readonly groups: SharedBatchNote[] = [];
  private steps = 0;
  private inflight = 0;
  private stepNested = 0;

  /** Sequential D1/DO round trips so far. */
  get hops(): number {
    return this.steps;
  }

  /** Runs one call of `kind`, counting and timing it. */
  async time<T>(kind: CallKind, call: () => Promise<T>, nestedOf?: (result: T) => number): Promise<T> {
    const hop = kind !== "redis";
    if (hop && this.inflight++ === 0) {
      this.steps++;
      this.stepNested = 0;
    }
    const started = performance.now();
    try {
      const result = await call();
      const nested = nestedOf?.(result) ?? 0;
      if (hop && nested > this.stepNested) this.stepNested = nested;
      return result;
    } finally {
      this.calls[kind]++;
      this.ms[kind] += performance.now() - started;
      if (hop && --this.inflight === 0) this.steps += this.stepNested;
    }
  }

  /**
   * Adds what one D1 call reported: a statement's result, or a batch's results
   * (one transaction, so at most one write transaction however many statements).
   */
  noteD1(meta: D1Meta | readonly D1Meta[]): void {
    const metas = Array.isArray(meta) ? (meta as readonly D1Meta[]) : [meta as D1Meta];
    let wrote = false;
    for (const m of metas) {
      if (!m) continue;
      this.rowsRead += m.rows_read ?? 0;
      this.rowsWritten += m.rows_written ?? 0;
      if (m.changed_db || (m.rows_written ?? 0) > 0) wrote = true;
    }
    if (wrote) this.writeTx++;
  }

  /**
   * Adds this request's share of a batch it shared with others (group commit): the rows of
   * its own statements, and the write transaction only if it sent the batch, so that over
   * every request the transactions add up to the batches D1 ran. The round trip itself is
   * counted by `time()` around the wait, like any D1 call: each member waited for one.
   */
  noteShared(kind: string, share: { metas: readonly D1Meta[]; size: number; sent: boolean; wrote: boolean }): void {
    for (const m of share.metas) {
      this.rowsRead += m?.rows_read ?? 0;
      this.rowsWritten += m?.rows_written ?? 0;
    }
    if (share.sent && share.wrote) this.writeTx++;
    this.groups.push({ kind, size: share.size, sent: share.sent });
  }

  /** What D1 did so far; `since(snapshot)` gives one job's or one step's share. */
  d1Cost(): D1Cost {
    return { calls: this.calls.d1, rowsRead: this.rowsRead, rowsWritten: this.rowsWritten, writeTx: this.writeTx };
  }

  /** The D1 cost since an earlier `d1Cost()` (one cron job of several sharing a meter). */
  d1Since(before: D1Cost): D1Cost {
    const now = this.d1Cost();
    return {
      calls: now.calls - before.calls,
      rowsRead: now.rowsRead - before.rowsRead,
      rowsWritten: now.rowsWritten - before.rowsWritten,
      writeTx: now.writeTx - before.writeTx,
    };
  }

  /** Records round trips a callee reported (for the log and the header). */
  noteNested(kind: CallKind, n: number): void {
    this.nestedCalls[kind] += n;
  }

  /**
   * The standard `Server-Timing` value, e.g.
   * `d1;desc="2 calls, 14 rows read, 3 written, 1 write tx";dur=3.1, do;desc="1 call";dur=0.8, hops;desc="3 sequential"`.
   * Kinds with no calls are left out; `hops` is always there. The D1 rows are this
   * request's own calls; an object's D1 work is counted by the object (its admin view).
   * Each shared batch the request rode in adds `d1group;desc="points.charge, 7 requests, sent"`
   * (`sent`: this request sent it and counts its write transaction; the others count none).
   */
  serverTiming(): string {
    const parts: string[] = [];
    for (const kind of KINDS) {
      const n = this.calls[kind];
      if (n === 0) continue;
      const nested = this.nestedCalls[kind] > 0 ? ` (+${this.nestedCalls[kind]} nested)` : "";
      const rows = kind === "d1" ? `, ${this.rowsRead} rows read, ${this.rowsWritten} written, ${this.writeTx} write tx` : "";
      parts.push(`${kind};desc="${n} call${n === 1 ? "" : "s"}${nested}${rows}";dur=${this.ms[kind].toFixed(1)}`);
    }
    for (const kind of KINDS) {
      if (this.calls[kind] === 0 && this.nestedCalls[kind] > 0) parts.push(`${kind};desc="0 calls (+${this.nestedCalls[kind]} nested)"`);
    }
    for (const g of this.groups)
      parts.push(`d1group;desc="${g.kind}, ${g.size} request${g.size === 1 ? "" : "s"}${g.sent ? ", sent" : ""}"`);
    if (this.cache) parts.push(`cache;desc="${this.cache}"`);
    parts.push(`hops;desc="${this.steps} sequential"`);
    return parts.join(", ");
  }

  /** Fields for the request log line. */
  logFields(): Record<string, number> {
    const out: Record<string, number> = { hops: this.steps };
    for (const kind of KINDS) {
      if (this.calls[kind] === 0 && this.nestedCalls[kind] === 0) continue;
      out[`${kind}Calls`] = this.calls[kind] + this.nestedCalls[kind];
      out[`${kind}Ms`] = Math.round(this.ms[kind] * 10) / 10;
    }
    if (this.calls.d1 > 0) Object.assign(out, { d1RowsRead: this.rowsRead, d1RowsWritten: this.rowsWritten, d1WriteTx: this.writeTx });
    if (this.groups.length > 0) out.d1GroupMax = Math.max(...this.groups.map((g) => g.size));
    return out;
  }
}

/**
 * A Durable Object call that threw: the object is unreachable, overloaded
 * ("Durable Object is overloaded"), was reset, or the connection was lost. The
 * request is answered 503 with Retry-After (src/app.ts), never 500; whether the
 * call was applied is unknown, so callers that may have changed state compensate.
 */
export class ObjectUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`durable object unavailable: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "ObjectUnavailableError";
  }
}

/** One counted Durable Object RPC whose failure becomes an ObjectUnavailableError. */
export function callObject<T>(meter: HopMeter, call: () => PromiseLike<unknown>, nestedOf?: (result: T) => number): Promise<T> {
  return meter.time(
    "do",
    async () => {
      try {
        return (await call()) as T;
      } catch (err) {
        throw err instanceof ObjectUnavailableError ? err : new ObjectUnavailableError(err);
      }
    },
    nestedOf,
  );
}

/** A meter that nobody reads: counting stays cheap and harmless. */
export const detachedMeter = () => new HopMeter();

/** Parses the `hops` metric back out of a Server-Timing value (tests, benchmarks). */
export function hopsOf(serverTiming: string | null): number | undefined {
  const m = /(?:^|,\s*)hops;desc="(\d+) sequential"/.exec(serverTiming ?? "");
  return m ? Number(m[1]) : undefined;
}

/** Parses the D1 cost back out of a Server-Timing value (tests, benchmarks); zero when the request made no D1 call. */
export function d1CostOf(serverTiming: string | null): D1Cost {
  const m = /(?:^|,\s*)d1;desc="(\d+) calls?(?: \(\+\d+ nested\))?, (\d+) rows read, (\d+) written, (\d+) write tx"/.exec(
    serverTiming ?? "",
  );
  return m
    ? { calls: Number(m[1]), rowsRead: Number(m[2]), rowsWritten: Number(m[3]), writeTx: Number(m[4]) }
    : { calls: 0, rowsRead: 0, rowsWritten: 0, writeTx: 0 };
}

/** Parses the shared batches back out of a Server-Timing value (benchmarks: group sizes per kind). */
export function d1GroupsOf(serverTiming: string | null): SharedBatchNote[] {
  const out: SharedBatchNote[] = [];
  for (const m of (serverTiming ?? "").matchAll(/(?:^|,\s*)d1group;desc="([^,"]+), (\d+) requests?(, sent)?"/g)) {
    out.push({ kind: m[1]!, size: Number(m[2]), sent: m[3] !== undefined });
  }
  return out;
}

/**
 * Sees every SQL text prepared through a metered binding. Unset in production
 * (one branch per prepare); the plan check (test/shared/query-plans.test.ts)
 * sets it to collect every statement the code really sends, so a new statement is
 * planned without anyone listing it.
 */
let statementRecorder: ((sql: string) => void) | undefined;

/** Installs (or, with undefined, removes) the statement recorder. */
export function recordStatements(recorder: ((sql: string) => void) | undefined): void {
  statementRecorder = recorder;
}

/**
 * A prepared statement whose every execution is one counted D1 call with its
 * rows. `first()` and `raw()` return no `meta`, so they run as `all()` and are
 * shaped here: `raw()` maps each row object to its values in column order, which
 * is what drizzle does with batch results too (a query whose result has two
 * columns of one name would lose one; the plan check asserts none does).
 */
class MeteredStatement {
  constructor(
    readonly inner: D1PreparedStatement,
    private readonly meter: HopMeter,
  ) {}
  bind(...values: unknown[]): MeteredStatement {
    return new MeteredStatement(this.inner.bind(...values), this.meter);
  }
  async first(colName?: string): Promise<unknown> {
    const row = ((await this.all()).results[0] ?? null) as Record<string, unknown> | null;
    return colName === undefined || row === null ? row : (row[colName] ?? null);
  }
  run(): Promise<D1Result> {
    return this.meter.time("d1", async () => this.counted(await this.inner.run()));
  }
  all(): Promise<D1Result> {
    return this.meter.time("d1", async () => this.counted(await this.inner.all()));
  }
  async raw(options?: { columnNames?: boolean }): Promise<unknown> {
    const rows = (await this.all()).results as Record<string, unknown>[];
    const values = rows.map((r) => Object.values(r));
    if (!options?.columnNames) return values;
    return [rows[0] ? Object.keys(rows[0]) : [], ...values];
  }
  private counted(result: D1Result): D1Result {
    this.meter.noteD1(result.meta);
    return result;
  }
}

/** The binding's own statement under a metered one (a shared batch is sent unmetered, then dealt out per request). */
export const unwrap = (s: D1PreparedStatement): D1PreparedStatement => (s instanceof MeteredStatement ? s.inner : s);

/**
 * The D1 binding seen through a meter: every statement execution, batch and
 * exec is one counted call. Statements built from it may be passed to its
 * `batch` (they are unwrapped); drizzle works over it unchanged.
 */
export function meterD1(d1: D1Database, meter: HopMeter): D1Database {
  const metered = {
    prepare: (query: string) => {
      statementRecorder?.(query);
      return new MeteredStatement(d1.prepare(query), meter) as unknown as D1PreparedStatement;
    },
    batch: <T = unknown>(statements: D1PreparedStatement[]) =>
      meter.time("d1", async () => {
        const results = await d1.batch<T>(statements.map(unwrap));
        meter.noteD1(results.map((r) => r.meta));
        return results;
      }),
    exec: (query: string) => meter.time("d1", () => d1.exec(query)),
    // A session opened from a metered binding is metered by the same meter.
    withSession: (constraint?: string) => {
      const session = d1.withSession(constraint);
      const inner = meterD1(session as unknown as D1Database, meter);
      return { prepare: inner.prepare, batch: inner.batch, getBookmark: () => session.getBookmark() };
    },
    dump: () => d1.dump(),
  };
  return metered as unknown as D1Database;
}
