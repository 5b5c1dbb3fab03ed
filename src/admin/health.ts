import type { Backlog } from "./backlog.repo";

/**
 * The dependency check behind `GET /api/v1/admin/health` (uptime checks, a sale's go/no-go).
 * Every probe runs in parallel, so the check costs one round trip, and each has a deadline,
 * so a hung dependency is reported as failed instead of hanging the checker.
 *
 * Hard dependencies (any failure: 503): D1 and the Durable Objects. Soft ones (degraded,
 * still 200): Redis (a cache, every read falls back to D1), an outbox backlog, dead letters.
 */
export interface HealthProbes {
  /** Counts the event backlog up to `cap` (one bounded D1 batch on the primary); doubles as the D1 check. */
  backlog(cap: number): Promise<Backlog>;
  /** A storage-only call to one well-known CouponIssuer object (HEALTH_PROBE_OBJECT). */
  couponObject(): Promise<unknown>;
  /** A Redis PING (its client's own short timeout applies); undefined when Redis is not configured. */
  redis: (() => Promise<unknown>) | undefined;
}

/** The CouponIssuer instance the check calls: a name no coupon has (coupons are `"{id}"` or `"{id}:{shard}"`), so it never loads a coupon or stores anything. */
export const HEALTH_PROBE_OBJECT = "health-probe";
/** Longest a hard probe may take before it counts as failed. */
export const HEALTH_PROBE_TIMEOUT_MS = 3_000;
/** Pending outbox rows from which the event relay counts as behind (also the count's cap: a bounded read). */
export const OUTBOX_BEHIND_AT = 1_000;

export type ProbeStatus = "ok" | "fail" | "off";

export interface ProbeResult {
  status: ProbeStatus;
  ms: number;
}

export interface HealthReport {
  /** ok: all good; degraded: a soft check failed; down: a hard dependency failed (answered 503). */
  status: "ok" | "degraded" | "down";
  checks: {
    d1: ProbeResult;
    couponObject: ProbeResult;
    redis: ProbeResult;
    outbox: { status: "ok" | "behind" | "unknown"; pending: number | null };
    deadLetters: { status: "ok" | "waiting" | "unknown"; waiting: number | null };
  };
}

class ProbeTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = "ProbeTimeout";
  }
}

/** Runs one probe against its deadline; the failure itself goes to `onError` (the log), never to the answer. */
async function probe<T>(
  run: () => Promise<T>,
  timeoutMs: number,
  onError: (err: unknown) => void,
): Promise<{ result: ProbeResult; value?: T }> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeTimeout(timeoutMs)), timeoutMs);
  });
  try {
    const value = await Promise.race([run(), deadline]);
    return { result: { status: "ok", ms: Math.round(performance.now() - started) }, value };
  } catch (err) {
    onError(err);
    return { result: { status: "fail", ms: Math.round(performance.now() - started) } };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs every probe in parallel and grades the answers. */
export async function checkHealth(
  probes: HealthProbes,
  options: { timeoutMs?: number; onError: (check: string, err: unknown) => void },
): Promise<HealthReport> {
  const timeoutMs = options.timeoutMs ?? HEALTH_PROBE_TIMEOUT_MS;
  const redisProbe = probes.redis;
  const [d1, couponObject, redis] = await Promise.all([
    probe(
      () => probes.backlog(OUTBOX_BEHIND_AT),
      timeoutMs,
      (err) => options.onError("d1", err),
    ),
    probe(
      () => probes.couponObject(),
      timeoutMs,
      (err) => options.onError("couponObject", err),
    ),
    redisProbe
      ? probe(redisProbe, timeoutMs, (err) => options.onError("redis", err))
      : Promise.resolve({ result: { status: "off" as const, ms: 0 } }),
  ]);
  const backlog = d1.value;
  const outbox = backlog
    ? { status: backlog.outboxPending >= OUTBOX_BEHIND_AT ? ("behind" as const) : ("ok" as const), pending: backlog.outboxPending }
    : { status: "unknown" as const, pending: null };
  const deadLetters = backlog
    ? { status: backlog.deadLettersWaiting > 0 ? ("waiting" as const) : ("ok" as const), waiting: backlog.deadLettersWaiting }
    : { status: "unknown" as const, waiting: null };
  const down = d1.result.status === "fail" || couponObject.result.status === "fail";
  const degraded = redis.result.status === "fail" || outbox.status === "behind" || deadLetters.status === "waiting";
  return {
    status: down ? "down" : degraded ? "degraded" : "ok",
    checks: { d1: d1.result, couponObject: couponObject.result, redis: redis.result, outbox, deadLetters },
  };
}
