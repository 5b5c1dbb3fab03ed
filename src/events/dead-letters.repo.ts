export interface DeadLetterRow {
  id: number;
  eventId: string;
  type: string;
  payload: string;
  attempts: number;
  createdAt: number;
  replayedAt: number | null;
}

/** D1 access for dead letters (admin list and replay). */
export class DeadLettersRepo {
  constructor(private readonly d1: D1Database) {}

  async list(afterId: number, limit: number): Promise<DeadLetterRow[]> {
    const res = await this.d1
      .prepare(
        `SELECT id, event_id AS eventId, type, payload, attempts, created_at AS createdAt, replayed_at AS replayedAt
         FROM dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2`,
      )
      .bind(afterId, limit)
      .all<DeadLetterRow>();
    return res.results;
  }

  async find(id: number): Promise<DeadLetterRow | undefined> {
    const row = await this.d1
      .prepare(
        `SELECT id, event_id AS eventId, type, payload, attempts, created_at AS createdAt, replayed_at AS replayedAt
         FROM dead_letters WHERE id = ?1`,
      )
      .bind(id)
      .first<DeadLetterRow>();
    return row ?? undefined;
  }

  async markReplayed(id: number, at: number): Promise<void> {
    await this.d1.prepare("UPDATE dead_letters SET replayed_at = ?1 WHERE id = ?2").bind(at, id).run();
  }
}
