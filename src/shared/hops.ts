/**
 * Round-trip accounting (DESIGN §8): every D1 call (a query or a batch) and
 * every Durable Object RPC a request makes is counted, timed, and folded into
 * the request's *sequential depth*, the number of round trips a client waits
 * for one after another. Calls that overlap in time (a parallel fan-out) are
 * one step. A callee may report round trips it made before answering (a
 * CouponIssuer writing D1), which lengthen the step it belongs to by the most
 * any overlapping callee reported.
 *
 * Redis calls are counted and timed too, but are not hops: Redis is an
 * optional cache whose calls are bounded by a short timeout, and the budgets
 * in DESIGN §8 are about D1 and the objects.
 */
export type CallKind = "d1" | "do" | "redis";

const KINDS: readonly CallKind[] = ["d1", "do", "redis"];

export class HopMeter {
  readonly calls: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  readonly ms: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  /** Round trips made by callees before they answered (part of the depth, not of `calls`). */
  readonly nestedCalls: Record<CallKind, number> = { d1: 0, do: 0, redis: 0 };
  /** Whether the edge cache answered (public catalogue reads only; src/shared/edge-cache.ts). */
  cache: "hit" | "miss" | "bypass" | undefined = undefined;
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

  /** Records round trips a callee reported (for the log and the header). */
  noteNested(kind: CallKind, n: number): void {
    this.nestedCalls[kind] += n;
  }

  /**
   * The standard `Server-Timing` value, e.g.
   * `d1;desc="2 calls";dur=3.1, do;desc="1 call";dur=0.8, hops;desc="3 sequential"`.
   * Kinds with no calls are left out; `hops` is always there.
   */
  serverTiming(): string {
    const parts: string[] = [];
    for (const kind of KINDS) {
      const n = this.calls[kind];
      if (n === 0) continue;
      const nested = this.nestedCalls[kind] > 0 ? ` (+${this.nestedCalls[kind]} nested)` : "";
      parts.push(`${kind};desc="${n} call${n === 1 ? "" : "s"}${nested}";dur=${this.ms[kind].toFixed(1)}`);
    }
    for (const kind of KINDS) {
      if (this.calls[kind] === 0 && this.nestedCalls[kind] > 0) parts.push(`${kind};desc="0 calls (+${this.nestedCalls[kind]} nested)"`);
    }
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

/** A meter that nobody reads (crons, queue consumers, objects): counting stays cheap and harmless. */
export const detachedMeter = () => new HopMeter();

/** Parses the `hops` metric back out of a Server-Timing value (tests, benchmarks). */
export function hopsOf(serverTiming: string | null): number | undefined {
  const m = /(?:^|,\s*)hops;desc="(\d+) sequential"/.exec(serverTiming ?? "");
  return m ? Number(m[1]) : undefined;
}

class MeteredStatement {
  constructor(
    readonly inner: D1PreparedStatement,
    private readonly meter: HopMeter,
  ) {}
  bind(...values: unknown[]): MeteredStatement {
    return new MeteredStatement(this.inner.bind(...values), this.meter);
  }
  first(colName?: string): Promise<unknown> {
    return this.meter.time("d1", () => (colName === undefined ? this.inner.first() : this.inner.first(colName)));
  }
  run(): Promise<D1Result> {
    return this.meter.time("d1", () => this.inner.run());
  }
  all(): Promise<D1Result> {
    return this.meter.time("d1", () => this.inner.all());
  }
  raw(options?: { columnNames?: boolean }): Promise<unknown> {
    return this.meter.time("d1", () => this.inner.raw(options as { columnNames: true }));
  }
}

const unwrap = (s: D1PreparedStatement): D1PreparedStatement => (s instanceof MeteredStatement ? s.inner : s);

/**
 * The D1 binding seen through a meter: every statement execution, batch and
 * exec is one counted call. Statements built from it may be passed to its
 * `batch` (they are unwrapped); drizzle works over it unchanged.
 */
export function meterD1(d1: D1Database, meter: HopMeter): D1Database {
  const metered = {
    prepare: (query: string) => new MeteredStatement(d1.prepare(query), meter) as unknown as D1PreparedStatement,
    batch: <T = unknown>(statements: D1PreparedStatement[]) => meter.time("d1", () => d1.batch<T>(statements.map(unwrap))),
    exec: (query: string) => meter.time("d1", () => d1.exec(query)),
    withSession: (constraint?: string) => d1.withSession(constraint),
    dump: () => d1.dump(),
  };
  return metered as unknown as D1Database;
}
