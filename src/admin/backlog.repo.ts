/** What the counts are capped at: a count reads at most this many index entries, whatever the backlog. */
export const BACKLOG_COUNT_CAP = 10_000;

export interface Backlog {
  /** Outbox rows not yet published (at most BACKLOG_COUNT_CAP). */
  outboxPending: number;
  /** Dead letters not replayed yet (at most BACKLOG_COUNT_CAP). */
  deadLettersWaiting: number;
}

/**
 * The event backlog an operator watches (GET /admin/stats). Each count is a bounded range
 * of a partial or leading-status index: the PENDING prefix of `outbox_status_next_idx` and
 * `dead_letters_waiting_idx` (0008), never the published or replayed history.
 */
export class BacklogRepo {
  constructor(private readonly d1: D1Database) {}

  async read(cap = BACKLOG_COUNT_CAP): Promise<Backlog> {
    const [outbox, letters] = await this.d1.batch<{ n: number }>([
      this.d1.prepare("SELECT COUNT(*) AS n FROM (SELECT id FROM outbox WHERE status = 'PENDING' LIMIT ?1)").bind(cap),
      // `id > 0` makes the count a range of the partial index (SEARCH ... id>?), not a walk of the table.
      this.d1.prepare("SELECT COUNT(*) AS n FROM (SELECT id FROM dead_letters WHERE replayed_at IS NULL AND id > 0 LIMIT ?1)").bind(cap),
    ]);
    return { outboxPending: outbox?.results[0]?.n ?? 0, deadLettersWaiting: letters?.results[0]?.n ?? 0 };
  }
}
