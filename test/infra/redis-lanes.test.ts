import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config";
import { createUserCouponCache } from "../../src/coupons/user-coupon.cache";
import { createRedis, tryRedis } from "../../src/infra/redis";
import { rawRedis, redisAvailable } from "../support/redis";

const key = (k: string) => `lanes-test:${crypto.randomUUID()}:${k}`;

/** The config of a deployment whose Redis is at `url` (the bridge, maybe behind one of its faults), with `vars` on top. */
const configFor = (url: string, vars: Record<string, string | undefined> = {}) =>
  loadConfig({ ...env, UPSTASH_REDIS_REST_URL: url, UPSTASH_REDIS_REST_TOKEN: env.TEST_REDIS_TOKEN || "token", ...vars } as Env);

describe("Redis timeouts per purpose: configuration", () => {
  it("defaults to 250 ms on a request's path, 1000 ms and one retry in the background", () => {
    expect(loadConfig({ ...env } as Env).redisTimeouts).toEqual({ requestMs: 250, backgroundMs: 1_000, backgroundRetries: 1 });
    expect(
      configFor("http://127.0.0.1:1", {
        REDIS_REQUEST_TIMEOUT_MS: "80",
        REDIS_BACKGROUND_TIMEOUT_MS: "3000",
        REDIS_BACKGROUND_RETRIES: "2",
      }).redisTimeouts,
    ).toEqual({
      requestMs: 80,
      backgroundMs: 3_000,
      backgroundRetries: 2,
    });
  });

  it("refuses values that are not whole milliseconds in range, or more than 3 retries", () => {
    for (const bad of [
      { REDIS_REQUEST_TIMEOUT_MS: "0" },
      { REDIS_REQUEST_TIMEOUT_MS: "fast" },
      { REDIS_BACKGROUND_TIMEOUT_MS: "60000" },
      { REDIS_BACKGROUND_RETRIES: "4" },
      { REDIS_BACKGROUND_RETRIES: "0.5" },
    ]) {
      expect(() => configFor("http://127.0.0.1:1", bad), JSON.stringify(bad)).toThrow();
    }
  });
});

describe("Redis timeouts per purpose: which calls arm which timeout", () => {
  afterEach(() => vi.restoreAllMocks());

  /** Every Redis call arms its lane's timeout (AbortSignal.timeout); here each fires at once, against a server that never answers. */
  function armedTimeouts(): number[] {
    const armed: number[] = [];
    vi.spyOn(AbortSignal, "timeout").mockImplementation((ms: number) => {
      armed.push(ms);
      const c = new AbortController();
      c.abort(new DOMException("The operation timed out.", "TimeoutError"));
      return c.signal;
    });
    return armed;
  }

  it("a request's read tries once under the request timeout; a background write tries twice under the background timeout", async () => {
    const lanes = createRedis(configFor(env.TEST_BLACKHOLE_URL, { REDIS_REQUEST_TIMEOUT_MS: "111", REDIS_BACKGROUND_TIMEOUT_MS: "2222" }))!;
    const armed = armedTimeouts();
    expect(await tryRedis(lanes.request, "read", (r) => r.get(key("r")))).toBeUndefined();
    expect(armed).toEqual([111]);
    armed.length = 0;
    expect(await tryRedis(lanes.background, "write", (r) => r.set(key("w"), "v"))).toBeUndefined();
    expect(armed).toEqual([2222, 2222]);
  });

  it("a Durable Object's evictions take the background lane (its reads stay on the request lane)", async () => {
    const cache = createUserCouponCache(
      configFor(env.TEST_BLACKHOLE_URL, { REDIS_REQUEST_TIMEOUT_MS: "111", REDIS_BACKGROUND_TIMEOUT_MS: "2222" }),
    );
    const armed = armedTimeouts();
    await cache.evict([1]);
    expect(armed).toEqual([2222, 2222]);
    armed.length = 0;
    expect((await cache.get(1)).rows).toBeUndefined();
    expect(armed).toEqual([111]);
  });
});

// Skipped only when no redis-server runs locally (global setup says so loudly; under CI it fails instead).
describe.skipIf(!redisAvailable)("Redis timeouts per purpose against the real bridge", () => {
  it("behind a Redis 300 ms away, a request's read gives up (D1 answers) while a background write waits and lands", async () => {
    const lanes = createRedis(
      configFor(`${env.TEST_REDIS_URL}/slow/300`, { REDIS_REQUEST_TIMEOUT_MS: "100", REDIS_BACKGROUND_TIMEOUT_MS: "3000" }),
    )!;
    const k = key("slow");
    await rawRedis().set(k, "there");
    expect(await tryRedis(lanes.request, "read", (r) => r.get(k))).toBeUndefined();
    expect(await tryRedis(lanes.background, "write", (r) => r.set(k, "written"))).toBe("OK");
    expect(await rawRedis().get(k)).toBe("written");
  });

  it("a background write whose first call is lost lands on its retry; with REDIS_BACKGROUND_RETRIES = 0 it is lost", async () => {
    const vars = { REDIS_BACKGROUND_TIMEOUT_MS: "200" };
    const k = key("retry");
    const retried = createRedis(configFor(`${env.TEST_REDIS_URL}/drop-first/${crypto.randomUUID()}`, vars))!;
    expect(await tryRedis(retried.background, "write", (r) => r.set(k, "second call"))).toBe("OK");
    expect(await rawRedis().get(k)).toBe("second call");

    const once = createRedis(
      configFor(`${env.TEST_REDIS_URL}/drop-first/${crypto.randomUUID()}`, { ...vars, REDIS_BACKGROUND_RETRIES: "0" }),
    )!;
    const lost = key("lost");
    expect(await tryRedis(once.background, "write", (r) => r.set(lost, "never"))).toBeUndefined();
    expect(await rawRedis().get(lost)).toBeNull();
  });
});
