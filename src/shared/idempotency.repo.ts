/** A stored key: `statusCode` is null while the first request is still running. */
export interface IdempotencyRecord {
  scope: string;
  requestHash: string;
  statusCode: number | null;
  responseBody: string | null;
  createdAt: number;
  expiresAt: number;
}

/** Port over the `idempotency_keys` table (PK(user_id, key)). */
export interface IdempotencyStore {
  /**
   * Inserts an in-flight claim. True when this request now owns the key: the
   * key was free, its row had expired, or an in-flight claim with the same hash
   * was abandoned (older than `staleBefore`, e.g. the Worker died mid-request).
   */
  claim(userId: number, key: string, scope: string, requestHash: string, now: number, expiresAt: number, staleBefore: number): Promise<boolean>;
  find(userId: number, key: string): Promise<IdempotencyRecord | null>;
  /** Stores the response of the claim this request owns. */
  complete(userId: number, key: string, requestHash: string, createdAt: number, statusCode: number, responseBody: string): Promise<void>;
  /** Frees the claim this request owns (5xx: a retry must run again). */
  release(userId: number, key: string, requestHash: string, createdAt: number): Promise<void>;
  /** Deletes up to `limit` expired keys; returns how many. */
  purgeExpired(now: number, limit?: number): Promise<number>;
}

type Row = { scope: string; request_hash: string; status_code: number | null; response_body: string | null; created_at: number; expires_at: number };

export class IdempotencyRepo implements IdempotencyStore {
  constructor(private readonly d1: D1Database) {}

  async claim(userId: number, key: string, scope: string, requestHash: string, now: number, expiresAt: number, staleBefore: number): Promise<boolean> {
    // One statement, so two racing requests cannot both win: the PK decides.
    const res = await this.d1
      .prepare(
        `INSERT INTO idempotency_keys (user_id, key, scope, request_hash, status_code, response_body, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6)
         ON CONFLICT (user_id, key) DO UPDATE SET
           scope = excluded.scope, request_hash = excluded.request_hash, status_code = NULL, response_body = NULL,
           created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= ?5
            OR (idempotency_keys.status_code IS NULL AND idempotency_keys.request_hash = ?4 AND idempotency_keys.created_at <= ?7)`,
      )
      .bind(userId, key, scope, requestHash, now, expiresAt, staleBefore)
      .run();
    return res.meta.changes === 1;
  }

  async find(userId: number, key: string): Promise<IdempotencyRecord | null> {
    const row = await this.d1
      .prepare("SELECT scope, request_hash, status_code, response_body, created_at, expires_at FROM idempotency_keys WHERE user_id = ? AND key = ?")
      .bind(userId, key)
      .first<Row>();
    if (!row) return null;
    return {
      scope: row.scope,
      requestHash: row.request_hash,
      statusCode: row.status_code,
      responseBody: row.response_body,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
    };
  }

  async complete(userId: number, key: string, requestHash: string, createdAt: number, statusCode: number, responseBody: string): Promise<void> {
    await this.d1
      .prepare(
        `UPDATE idempotency_keys SET status_code = ?, response_body = ?
         WHERE user_id = ? AND key = ? AND request_hash = ? AND created_at = ? AND status_code IS NULL`,
      )
      .bind(statusCode, responseBody, userId, key, requestHash, createdAt)
      .run();
  }

  async release(userId: number, key: string, requestHash: string, createdAt: number): Promise<void> {
    await this.d1
      .prepare("DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND request_hash = ? AND created_at = ? AND status_code IS NULL")
      .bind(userId, key, requestHash, createdAt)
      .run();
  }

  async purgeExpired(now: number, limit = 1_000): Promise<number> {
    const res = await this.d1
      .prepare("DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)")
      .bind(now, limit)
      .run();
    return res.meta.changes;
  }
}
