import { groupCommitter } from "./group-commit";
import { unwrap, type HopMeter } from "./hops";
import { laterBookmark } from "./d1-session";

/**
 * Where a repo sends a write batch. The statements must never abort the batch: their
 * guards are conditions in SQL and the outcome is read from the results (the batch may be
 * shared with other requests, src/shared/group-commit.ts). `kind` names the queue
 * (`points.charge`, `orders.pay`, ...): requests of one kind share batches.
 */
export interface WriteBatcher {
  batch(kind: string, statements: D1PreparedStatement[]): Promise<D1Result[]>;
  /** The newest bookmark of batches another request sent for this one (null: none, or every batch went alone). */
  bookmark(): string | null;
}

/** Every batch alone on `d1`: where sharing is off, and for repos built directly (tests). */
export function aloneOn(d1: D1Database): WriteBatcher {
  return { batch: (_kind, statements) => d1.batch(statements), bookmark: () => null };
}

export interface SharedWritesDeps {
  /** The isolate's D1 binding: the queues are per binding (i.e. per isolate) and kind. */
  binding: object;
  /** This request's D1 session (or the primary), unmetered: a batch this request sends goes here. */
  session: Pick<D1Database, "batch">;
  /** The session's bookmark after a batch it sent. */
  bookmark(): string | null;
  /** This request's meter: its share of each batch is noted there (src/shared/hops.ts noteShared). */
  meter: HopMeter;
  /** ctx.waitUntil: a batch this request sends outlives a client that goes away. */
  keepAlive?(work: Promise<unknown>): void;
}

/**
 * One request's writes, group-committed with the isolate's concurrent requests of the same
 * kind. `bookmark()` is the newest bookmark of the batches it rode in: another request may
 * have sent them, and the answer's `x-d1-bookmark` must cover this request's own write.
 */
export class SharedWrites implements WriteBatcher {
  private latest: string | null = null;

  constructor(private readonly deps: SharedWritesDeps) {}

  async batch(kind: string, statements: D1PreparedStatement[]): Promise<D1Result[]> {
    const { binding, session, meter, keepAlive } = this.deps;
    const share = await meter.time("d1", () =>
      groupCommitter(binding, kind).submit({
        statements: statements.map(unwrap),
        send: (all) => session.batch(all),
        bookmark: () => this.deps.bookmark(),
        keepAlive,
      }),
    );
    meter.noteShared(kind, { metas: share.results.map((r) => r.meta), size: share.size, sent: share.sent, wrote: share.wrote });
    this.latest = laterBookmark(this.latest, share.bookmark);
    return share.results;
  }

  bookmark(): string | null {
    return this.latest;
  }
}
