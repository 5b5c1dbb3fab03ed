import type { Context, MiddlewareHandler } from "hono";
import { AppError } from "./errors";
import type { IdempotencyStore, KeyClaim } from "./idempotency.repo";
import { errorFields, log } from "./logger";
import { isAdminPath, readJsonBody, requestUserId } from "./request-user";

export type { KeyClaim };

/** What the idempotency middleware reads from the Hono context (the app's `AppEnv` has it all). */
export interface IdempotencyEnv {
  Variables: { services: { idempotency: IdempotencyStore }; requestId: string; idempotency?: KeyClaim };
}

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** 1..255 printable ASCII characters. */
const KEY_PATTERN = /^[\x20-\x7E]{1,255}$/;

export interface IdempotencyOptions {
  now: () => number;
  /**
   * An in-flight claim older than this is taken as abandoned and may be taken over.
   * Only rows written by an earlier version of this middleware (claim first, complete
   * later) can be in flight; today a key is written together with its effect or not at all.
   */
  leaseMs: number;
}

export const DEFAULT_IDEMPOTENCY_OPTIONS: IdempotencyOptions = { now: Date.now, leaseMs: 120_000 };

/** SHA-256 (hex) of method, path and raw body: what "the same request" means for a key. */
export async function requestHash(method: string, path: string, body: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${method}\n${path}\n${body}`);
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Thrown by a use case whose batch found the key already taken (its effect skipped): the middleware replays what it holds. */
export class KeyTakenError extends Error {
  constructor() {
    super("idempotency key already used");
    this.name = "KeyTakenError";
  }
}

/** The statements that tie a request's Idempotency-Key to its effect in a batch (see `keyStatements`). */
export interface KeyStatements {
  /** Goes first: takes the key for this request, or leaves it to whoever holds it. */
  take: D1PreparedStatement;
  /**
   * SQL to AND into the effect's first statement, which must follow `take` directly:
   * `take` changed a row, so this request holds the key.
   */
  held: string;
  /**
   * Goes right after the effect: stores the answer (`bodySql`, evaluated after the effect,
   * so it can read the committed balance) when `appliedSql` holds, with its own `?` parameters.
   */
  close(appliedSql: string, ...appliedBinds: unknown[]): D1PreparedStatement;
  /** Goes last: frees the key when the effect was refused; the middleware then stores the refusal. */
  release: D1PreparedStatement;
  /**
   * Goes last instead of `release` when SQL can tell the refusal's answer: stores it under the
   * real scope (`statusSql` and `bodySql`, evaluated in the batch, with `binds` for their `?` in
   * order) when the effect was refused, so a refusal costs no write of its own after the batch.
   */
  refuse(statusSql: string, bodySql: string, ...binds: unknown[]): D1PreparedStatement;
  /** Whether `take` took the key, from its result. */
  taken(result: D1Result | undefined): boolean;
}

/**
 * The Idempotency-Key of `claim` in the effect's batch, with statements that never abort:
 * the batch may be shared with other requests (src/shared/group-commit.ts), and an abort
 * would roll their work back too. `take` takes the key (free, expired, or an abandoned
 * in-flight claim of the same request) under a scope no one else can write (the request's
 * scope with a random suffix), so `close` and `release` touch only a row this request took;
 * inside the batch the key then either holds this request's answer under its real scope, or
 * is gone, or was never touched. Nobody outside the batch ever sees the suffix.
 */
export function keyStatements(d1: D1Database, claim: KeyClaim, status: number, bodySql: string, ...bodyBinds: unknown[]): KeyStatements {
  const mine = `${claim.scope}#${crypto.randomUUID()}`;
  const take = d1
    .prepare(
      `INSERT INTO idempotency_keys (user_id, key, scope, request_hash, status_code, response_body, created_at, expires_at)
       VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)
       ON CONFLICT (user_id, key) DO UPDATE SET
         scope = excluded.scope, request_hash = excluded.request_hash, status_code = excluded.status_code,
         response_body = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at
       WHERE idempotency_keys.expires_at <= ?6
          OR (idempotency_keys.status_code IS NULL AND idempotency_keys.request_hash = ?4 AND idempotency_keys.created_at <= ?8)`,
    )
    .bind(claim.userId, claim.key, mine, claim.requestHash, status, claim.now, claim.expiresAt, claim.staleBefore);
  return {
    take,
    held: "changes() > 0",
    close: (appliedSql, ...appliedBinds) =>
      d1
        .prepare(
          `UPDATE idempotency_keys SET scope = ?, response_body = (${bodySql}) WHERE user_id = ? AND key = ? AND scope = ? AND (${appliedSql})`,
        )
        .bind(claim.scope, ...bodyBinds, claim.userId, claim.key, mine, ...appliedBinds),
    release: d1.prepare("DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND scope = ?").bind(claim.userId, claim.key, mine),
    // The row still carries `mine` only when the effect was refused (`close` moved it to the real scope otherwise).
    refuse: (statusSql, bodySql, ...binds) =>
      d1
        .prepare(
          `UPDATE idempotency_keys SET scope = ?, status_code = (${statusSql}), response_body = (${bodySql}) WHERE user_id = ? AND key = ? AND scope = ?`,
        )
        .bind(claim.scope, ...binds, claim.userId, claim.key, mine),
    taken: (result) => (result?.meta.changes ?? 0) > 0,
  };
}

/**
 * `Idempotency-Key` on POSTs under /api/v1 (admin excluded). Without the header
 * nothing changes. With it, for (userId, key):
 * - the use case gets the claim (`c.var.idempotency`). Charge, payment and order
 *   placement write it in the batch that applies their effect, with the response;
 *   when the key is taken the effect is skipped and this middleware replays the stored
 *   response (`Idempotent-Replayed: true`). So of racing or retried twins exactly one
 *   applies the effect, whatever crashes in between, and no extra round trip is paid;
 * - any other 2xx/4xx answer is stored afterwards; the first answer stored wins and
 *   is what every later twin gets. Routes that do not write the key themselves look
 *   a stored answer up first;
 * - "in progress" (a twin with this key is still running: its answer is the one to keep) is not stored;
 * - a 5xx is not stored, so a retry runs again (nothing was applied, or the marker
 *   committed with the effect and the retry replays it);
 * - the same key with another route or body is 409 IDEMPOTENCY_KEY_REUSED.
 * The user is the request's userId (equal to the JWT sub when identity is on);
 * a request without a valid one is left to the validator.
 */
export function idempotentPosts(
  opts: IdempotencyOptions = DEFAULT_IDEMPOTENCY_OPTIONS,
  atomicScopes: ReadonlySet<string> = new Set(),
): MiddlewareHandler<IdempotencyEnv> {
  return async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (key === undefined || c.req.method !== "POST" || isAdminPath(c.req.path)) return next();
    if (!KEY_PATTERN.test(key)) throw new AppError("VALIDATION_FAILED", "Idempotency-Key: 1..255 printable ASCII characters");
    const userId = await requestUserId(c);
    if (userId === undefined) return next();

    const body = await readJsonBody(c);
    const scope = `${c.req.method} ${c.req.path}`;
    const hash = await requestHash(c.req.method, c.req.path, body.kind === "json" ? body.text : "");
    const now = opts.now();
    const claim: KeyClaim = {
      userId,
      key,
      scope,
      requestHash: hash,
      now,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
      staleBefore: now - opts.leaseMs,
      stored: false,
    };

    if (!atomicScopes.has(scope)) {
      const replay = await replayStored(c, claim);
      if (replay) return replay;
    }
    c.set("idempotency", claim);
    await next();
    if (c.error instanceof KeyTakenError) {
      c.error = undefined;
      const replay = await replayStored(c, claim);
      // The key's row vanished between the abort and the read (purged): the client retries.
      if (!replay) throw new AppError("IDEMPOTENCY_KEY_IN_PROGRESS");
      c.res = replay;
      return;
    }
    // "In progress": a twin of this request is still running and its answer is the one to keep (issue 19).
    if (claim.stored || c.res.status >= 500 || (c.error instanceof AppError && c.error.code === "IDEMPOTENCY_KEY_IN_PROGRESS")) return;
    let stored: boolean;
    try {
      stored = await c.var.services.idempotency.storeIfAbsent(claim, c.res.status, await c.res.clone().text());
    } catch (err) {
      // The answer stands; without a stored copy a retry runs again, which for these answers changes nothing.
      log("error", "idempotency record not saved", { requestId: c.var.requestId, ...errorFields(err) });
      return;
    }
    // The key already holds an answer (a refusal decided before the effect's batch, or a twin's): that one stands.
    if (!stored) {
      const replay = await replayStored(c, claim);
      if (replay) c.res = replay;
    }
  };
}

/** The stored answer for the claim's key, or undefined when there is none yet. */
async function replayStored(c: Context<IdempotencyEnv>, claim: KeyClaim): Promise<Response | undefined> {
  const record = await c.var.services.idempotency.find(claim.userId, claim.key);
  if (!record || record.expiresAt <= claim.now) return undefined;
  if (record.scope !== claim.scope || record.requestHash !== claim.requestHash) throw new AppError("IDEMPOTENCY_KEY_REUSED");
  // Only a claim left by an earlier version can be in flight; it is taken over once its lease is over.
  if (record.statusCode === null || record.responseBody === null) {
    if (record.createdAt <= claim.staleBefore) return undefined;
    throw new AppError("IDEMPOTENCY_KEY_IN_PROGRESS");
  }
  return c.body(record.responseBody, record.statusCode as 200, { "Content-Type": "application/json", "Idempotent-Replayed": "true" });
}
