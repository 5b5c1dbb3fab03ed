import { DurableObject } from "cloudflare:workers";

/** Outcome of one hit: refusals are values, never thrown across RPC. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Seconds until the current window ends (0 when allowed). */
  retryAfterSeconds: number;
  remaining: number;
}

/**
 * One per rate-limit key (`user:{id}` or `ip:{addr}`), addressed by
 * `idFromName(key)`: a fixed-window counter of writes.
 *
 * Why a Durable Object and not the Workers Rate Limiting binding: Miniflare
 * (wrangler 4.164) does run `[[ratelimits]]` locally, but the binding's `limit`
 * and `period` (10 or 60 s only) are fixed in wrangler.toml, its clock is the
 * runtime's, and it is documented as approximate (per location). Our contract
 * is a per-minute limit set by the `RATE_LIMIT_WRITES_PER_MINUTE` var (0 = off)
 * and tests that move time without sleeping, so the counter lives here, with an
 * injected `now`.
 *
 * Invariant: within one window at most `limit` hits are allowed. `hit` reads,
 * decides and writes in one synchronous SQLite step (no await), so concurrent
 * requests cannot both take the last slot.
 */
export class RateLimiter extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS window (id INTEGER PRIMARY KEY CHECK (id = 1), start INTEGER NOT NULL, ends INTEGER NOT NULL, count INTEGER NOT NULL)");
  }

  /** Counts one write at `now` in the fixed window of `windowMs` and says whether it is within `limit`. */
  async hit(windowMs: number, limit: number, now: number): Promise<RateLimitDecision> {
    const start = Math.floor(now / windowMs) * windowMs;
    const row = this.sql.exec<{ start: number; count: number }>("SELECT start, count FROM window WHERE id = 1").toArray()[0];
    const count = row && row.start === start ? row.count : 0;
    if (count >= limit) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((start + windowMs - now) / 1000)), remaining: 0 };
    }
    this.sql.exec(
      "INSERT INTO window (id, start, ends, count) VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET start = excluded.start, ends = excluded.ends, count = excluded.count",
      start,
      start + windowMs,
      count + 1,
    );
    // An idle key should not keep storage forever: the alarm clears a finished window.
    if (count === 0) await this.ctx.storage.setAlarm(Math.max(Date.now(), start + windowMs) + windowMs);
    return { allowed: true, retryAfterSeconds: 0, remaining: limit - count - 1 };
  }

  /** Drops a finished window (a later hit simply starts a new one); never the current one. */
  override async alarm(): Promise<void> {
    this.sql.exec("DELETE FROM window WHERE ends <= ?", Date.now());
  }
}
