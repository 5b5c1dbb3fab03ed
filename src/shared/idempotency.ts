import type { MiddlewareHandler } from "hono";
import { AppError } from "./errors";
import type { AppEnv } from "./http";
import { errorFields, log } from "./logger";
import { isAdminPath, readJsonBody, requestUserId } from "./request-user";

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** 1..255 printable ASCII characters. */
const KEY_PATTERN = /^[\x20-\x7E]{1,255}$/;

export interface IdempotencyOptions {
  now: () => number;
  /** How long a request waits for an in-flight twin before answering 409 IDEMPOTENCY_KEY_IN_PROGRESS. */
  maxWaitMs: number;
  pollMs: number;
  /** An in-flight claim older than this is taken as abandoned (the Worker died) and may be taken over. */
  leaseMs: number;
  /** Test hook: pauses between the claim and the handler, to hold a race open deterministically. */
  afterClaim?: () => Promise<void>;
  /** Test hook: a twin found the key in flight (`polls` = how often it has waited so far). */
  onInFlight?: (polls: number) => void;
}

export const DEFAULT_IDEMPOTENCY_OPTIONS: IdempotencyOptions = { now: Date.now, maxWaitMs: 5_000, pollMs: 50, leaseMs: 120_000 };

/** SHA-256 (hex) of method, path and raw body: what "the same request" means for a key. */
export async function requestHash(method: string, path: string, body: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${method}\n${path}\n${body}`);
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `Idempotency-Key` on POSTs under /api/v1 (admin excluded). Without the header
 * nothing changes. With it, the key is claimed for (userId, key) by one INSERT
 * before the handler runs, so of two racing twins exactly one does the work:
 * - the winner runs the handler and stores its 2xx/4xx response for 24 h; on a
 *   5xx it deletes the claim so a retry runs again;
 * - a twin with the same hash replays the stored response (`Idempotent-Replayed: true`),
 *   waiting up to `maxWaitMs` while the winner is still running, then
 *   409 IDEMPOTENCY_KEY_IN_PROGRESS;
 * - the same key with another route or body is 409 IDEMPOTENCY_KEY_REUSED.
 * The user is the request's userId (equal to the JWT sub when identity is on);
 * a request without a valid one is left to the validator.
 */
export function idempotentPosts(opts: IdempotencyOptions = DEFAULT_IDEMPOTENCY_OPTIONS): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (key === undefined || c.req.method !== "POST" || isAdminPath(c.req.path)) return next();
    if (!KEY_PATTERN.test(key)) throw new AppError("VALIDATION_FAILED", "Idempotency-Key: 1..255 printable ASCII characters");
    const userId = await requestUserId(c);
    if (userId === undefined) return next();

    const body = await readJsonBody(c);
    const scope = `${c.req.method} ${c.req.path}`;
    const hash = await requestHash(c.req.method, c.req.path, body.kind === "json" ? body.text : "");
    const store = c.var.services.idempotency;
    // Waiting is counted in polls, not clock reads, so an injected frozen clock cannot make it endless.
    const maxPolls = Math.ceil(opts.maxWaitMs / opts.pollMs);

    for (let polls = 0; ; ) {
      const now = opts.now();
      if (await store.claim(userId, key, scope, hash, now, now + IDEMPOTENCY_TTL_MS, now - opts.leaseMs)) {
        await opts.afterClaim?.();
        return runClaimed(c, next, { userId, key, hash, createdAt: now });
      }
      const record = await store.find(userId, key);
      if (record === null && polls++ < maxPolls) continue; // released (5xx) or purged since: claim again
      if (record === null) throw new AppError("IDEMPOTENCY_KEY_IN_PROGRESS");
      if (record.scope !== scope || record.requestHash !== hash) throw new AppError("IDEMPOTENCY_KEY_REUSED");
      if (record.statusCode !== null) {
        return c.body(record.responseBody ?? "", record.statusCode as 200, {
          "Content-Type": "application/json",
          "Idempotent-Replayed": "true",
        });
      }
      opts.onInFlight?.(polls);
      if (polls++ >= maxPolls) throw new AppError("IDEMPOTENCY_KEY_IN_PROGRESS");
      await sleep(opts.pollMs);
    }
  };
}

type Claim = { userId: number; key: string; hash: string; createdAt: number };

async function runClaimed(c: Parameters<MiddlewareHandler<AppEnv>>[0], next: () => Promise<void>, claim: Claim) {
  const store = c.var.services.idempotency;
  try {
    await next();
  } catch (err) {
    await store.release(claim.userId, claim.key, claim.hash, claim.createdAt);
    throw err;
  }
  const res = c.res;
  try {
    if (res.status >= 500) await store.release(claim.userId, claim.key, claim.hash, claim.createdAt);
    else await store.complete(claim.userId, claim.key, claim.hash, claim.createdAt, res.status, await res.clone().text());
  } catch (err) {
    // The response stands; the claim is retried by its twins once the lease runs out.
    log("error", "idempotency record not saved", { requestId: c.var.requestId, ...errorFields(err) });
  }
  return undefined;
}
