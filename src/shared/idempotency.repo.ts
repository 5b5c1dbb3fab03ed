/**
 * The Idempotency-Key of one request, handed to the use case so that the key is
 * written in the same D1 batch as the effect (a durable marker: a crash, or a D1
 * error after commit, can never leave the effect applied and the key free).
 * `stored` is set by whoever wrote the key's response.
 */
export interface KeyClaim {
  userId: number;
  key: string;
  scope: string;
  requestHash: string;
  now: number;
  expiresAt: number;
  staleBefore: number;
  stored: boolean;
}

/** A stored key: `statusCode` is null only for a claim an earlier version left in flight. */
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
  find(userId: number, key: string): Promise<IdempotencyRecord | null>;
  /**
   * Stores an answer for the claim's key unless the key already holds one
   * (first answer wins); an expired row or an abandoned in-flight claim of the
   * same request is overwritten. True when this answer was stored.
   */
  storeIfAbsent(claim: KeyClaim, statusCode: number, responseBody: string): Promise<boolean>;
  /** Deletes up to `limit` expired keys; returns how many. */
  purgeExpired(now: number, limit?: number): Promise<number>;
}

type Row = {
  scope: string;
  request_hash: string;
  status_code: number | null;
  response_body: string | null;
  created_at: number;
  expires_at: number;
};

export class IdempotencyRepo implements IdempotencyStore {
  constructor(private readonly d1: D1Database) {}

  async find(userId: number, key: string): Promise<IdempotencyRecord | null> {
    const row = await this.d1
      .prepare(
        "SELECT scope, request_hash, status_code, response_body, created_at, expires_at FROM idempotency_keys WHERE user_id = ? AND key = ?",
      )
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

  async storeIfAbsent(claim: KeyClaim, statusCode: number, responseBody: string): Promise<boolean> {
    const res = await this.d1
      .prepare(
        `INSERT INTO idempotency_keys (user_id, key, scope, request_hash, status_code, response_body, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (user_id, key) DO UPDATE SET
           scope = excluded.scope, request_hash = excluded.request_hash, status_code = excluded.status_code,
           response_body = excluded.response_body, created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= ?7
            OR (idempotency_keys.status_code IS NULL AND idempotency_keys.request_hash = ?4 AND idempotency_keys.created_at <= ?9)`,
      )
      .bind(
        claim.userId,
        claim.key,
        claim.scope,
        claim.requestHash,
        statusCode,
        responseBody,
        claim.now,
        claim.expiresAt,
        claim.staleBefore,
      )
      .run();
    return res.meta.changes > 0;
  }

  async purgeExpired(now: number, limit = 1_000): Promise<number> {
    const res = await this.d1
      .prepare("DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)")
      .bind(now, limit)
      .run();
    return res.meta.changes;
  }
}
