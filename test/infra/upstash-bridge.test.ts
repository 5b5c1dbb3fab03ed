import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { Redis } from "@upstash/redis/cloudflare";

const url = env.TEST_REDIS_URL;
const token = env.TEST_REDIS_TOKEN;
const key = (k: string) => `bridge-test:${crypto.randomUUID()}:${k}`;

// Skipped only when no redis-server runs locally (global setup says so loudly; under CI it fails instead).
describe.skipIf(!url)("Upstash-REST bridge against the real redis-server", () => {
  const redis = () => new Redis({ url, token, retry: false });

  it("round-trips strings with spaces and unicode, numbers, nulls and JSON", async () => {
    const r = redis();
    const k = key("s");
    await r.set(k, 'hello world 한글 🎉 "quoted"');
    expect(await r.get(k)).toBe('hello world 한글 🎉 "quoted"');
    await r.set(k, 42);
    expect(await r.get(k)).toBe(42);
    expect(await r.get(key("missing"))).toBeNull();
    await r.set(k, { a: [1, "x y"], b: null });
    expect(await r.get(k)).toEqual({ a: [1, "x y"], b: null });
    expect(await r.incrby(key("n"), 5)).toBe(5);
  });

  it("answers sorted-set commands with arrays and scores (ranking shape)", async () => {
    const r = redis();
    const k = key("z");
    await r.zincrby(k, 3, "7");
    await r.zincrby(k, 5, "9");
    await r.zincrby(k, 1, "7");
    // The client pairs members with scores and JSON-parses numeric members.
    expect(await r.zrange(k, 0, -1, { rev: true, withScores: true })).toEqual([
      [9, 5],
      [7, 4],
    ]);
    expect(await r.zscore(k, "7")).toBe(4);
    expect(await r.expire(k, 345_600)).toBe(1);
    const ttl = await r.ttl(k);
    expect(ttl).toBeGreaterThan(345_000);
    expect(ttl).toBeLessThanOrEqual(345_600);
  });

  it("runs pipelines and atomic multi-exec", async () => {
    const r = redis();
    const k = key("p");
    const p = r.pipeline();
    p.set(k, "a b");
    p.get(k);
    p.hset(`${k}:h`, { field: "값" });
    p.hgetall(`${k}:h`);
    expect(await p.exec()).toEqual(["OK", "a b", 1, { field: "값" }]);
    const m = r.multi();
    m.incr(`${k}:c`);
    m.incr(`${k}:c`);
    expect(await m.exec()).toEqual([1, 2]);
  });

  it("reports redis errors as errors, and refuses a wrong token", async () => {
    const r = redis();
    const k = key("e");
    await r.set(k, "text");
    await expect(r.incr(k)).rejects.toThrow(/not an integer/);
    const wrong = new Redis({ url, token: "wrong", retry: false });
    await expect(wrong.get(k)).rejects.toThrow(/Unauthorized/);
    const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: "{not json" });
    expect(res.status).toBe(400);
    expect(await res.json()).toHaveProperty("error");
  });
});
