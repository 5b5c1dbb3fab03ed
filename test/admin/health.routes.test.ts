import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { checkHealth, OUTBOX_BEHIND_AT, type HealthProbes } from "../../src/admin/health";
import { hopsOf } from "../../src/shared/hops";
import { adminHeaders, api, errorCode } from "../support/http";
import { testApp } from "../support/secure-app";
import { appWithRedis, redisAvailable } from "../support/redis";

const HEALTH = "/api/v1/admin/health";

afterEach(() => vi.restoreAllMocks());

/** A D1 binding whose every query and batch throws the way an unreachable database does. */
function failingD1(): D1Database {
  const fail = () => Promise.reject(new Error("D1_ERROR: Network connection lost."));
  const statement: Record<string, unknown> = { first: fail, all: fail, run: fail, raw: fail };
  statement.bind = () => statement;
  const session = { prepare: () => statement, batch: fail, getBookmark: () => null };
  return { prepare: () => statement, batch: fail, exec: fail, dump: fail, withSession: () => session } as unknown as D1Database;
}

/** A namespace whose objects always throw, like an overloaded or unreachable Durable Object. */
function throwingNamespace(): DurableObjectNamespace {
  const fail = () => Promise.reject(new Error("Durable Object is overloaded. Requests queued for too long."));
  return { idFromName: (name: string) => name, get: () => new Proxy({}, { get: () => fail }) } as unknown as DurableObjectNamespace;
}

const quietWarnings = () => vi.spyOn(console, "warn").mockImplementation(() => {});

describe("GET /api/v1/admin/health", () => {
  it("answers ok with every check in one round trip (Redis off when not configured), and only to the admin token", async () => {
    const res = await api.get(HEALTH, adminHeaders);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data).toMatchObject({
      status: "ok",
      checks: {
        d1: { status: "ok" },
        couponObject: { status: "ok" },
        redis: { status: "off", ms: 0 },
        outbox: { status: "ok", pending: 0 },
        deadLetters: { status: "ok", waiting: 0 },
      },
    });
    // D1 and the object are asked in parallel: one sequential hop.
    expect(hopsOf(res.headers.get("server-timing"))).toBe(1);
    expect((await api.get(HEALTH)).status).toBe(401);
    expect((await api.get(HEALTH, { authorization: "Bearer wrong" })).status).toBe(403);
  });

  it.runIf(redisAvailable)("pings Redis when configured: ok when it answers, degraded (still 200) when it does not", async () => {
    const up = await appWithRedis({ prefix: "health:" }).get(HEALTH, adminHeaders);
    expect(up.body.data.checks.redis.status).toBe("ok");
    expect(up.body.data.status).toBe("ok");
    quietWarnings();
    const down = await appWithRedis({ prefix: "health:", redisUrl: env.TEST_BLACKHOLE_URL }).get(HEALTH, adminHeaders);
    expect(down.status).toBe(200);
    expect(down.body.data.checks.redis.status).toBe("fail");
    expect(down.body.data.status).toBe("degraded");
  });

  it("answers 503 SERVICE_UNAVAILABLE naming the hard dependency that failed: D1, or the coupon object", async () => {
    const warnings = quietWarnings();
    const noD1 = await testApp({ DB: failingD1() }).get(HEALTH, adminHeaders);
    expect(noD1.status).toBe(503);
    expect(errorCode(noD1)).toBe("SERVICE_UNAVAILABLE");
    expect(noD1.body.detail).toContain("d1");
    expect(noD1.body.detail).not.toContain("couponObject");
    expect(noD1.headers.get("retry-after")).toBe("5");
    const noObject = await testApp({ COUPON_ISSUER: throwingNamespace() }).get(HEALTH, adminHeaders);
    expect(noObject.status).toBe(503);
    expect(noObject.body.detail).toContain("couponObject");
    // The causes are logged, never answered.
    expect(JSON.stringify(noObject.body)).not.toContain("overloaded");
    expect(warnings.mock.calls.map((c) => String(c[0])).some((l) => l.includes('"check":"couponObject"') && l.includes("overloaded"))).toBe(
      true,
    );
  });

  it("is degraded by a waiting dead letter and by an outbox behind, counting no further than its cap", async () => {
    await env.DB.prepare(
      "INSERT INTO dead_letters (event_id, type, payload, attempts, created_at) VALUES (?, 'order.completed', '{}', 5, ?)",
    )
      .bind(crypto.randomUUID(), Date.now())
      .run();
    const letters = await api.get(HEALTH, adminHeaders);
    expect(letters.body.data.status).toBe("degraded");
    expect(letters.body.data.checks.deadLetters).toEqual({ status: "waiting", waiting: 1 });
    // Unpublished events, due in an hour (so no relay publishes them meanwhile): more than the cap.
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
       INSERT INTO outbox (event_id, type, aggregate_id, payload, status, attempts, next_attempt_at, created_at)
       SELECT 'health-' || i, 'order.completed', '1', '{}', 'PENDING', 0, ?2, ?2 FROM n`,
    )
      .bind(OUTBOX_BEHIND_AT + 5, Date.now() + 3_600_000)
      .run();
    const behind = await api.get(HEALTH, adminHeaders);
    expect(behind.status).toBe(200);
    expect(behind.body.data.checks.outbox).toEqual({ status: "behind", pending: OUTBOX_BEHIND_AT });
    expect(behind.body.data.checks.d1.status).toBe("ok");
  });
});

describe("checkHealth", () => {
  it("fails a probe that does not answer within its deadline instead of waiting for it", async () => {
    const never = () => new Promise<never>(() => {});
    const probes: HealthProbes = { backlog: async () => ({ outboxPending: 0, deadLettersWaiting: 0 }), couponObject: never, redis: never };
    const failed: string[] = [];
    const started = Date.now();
    const report = await checkHealth(probes, { timeoutMs: 50, onError: (check) => failed.push(check) });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(report.status).toBe("down");
    expect(report.checks.couponObject.status).toBe("fail");
    expect(report.checks.redis.status).toBe("fail");
    expect(report.checks.d1.status).toBe("ok");
    expect(failed.sort()).toEqual(["couponObject", "redis"]);
  });
});
