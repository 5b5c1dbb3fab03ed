import type { Context, MiddlewareHandler } from "hono";
import { cacheKeyOf, cachePolicyFor, changesCatalogue, PRIVATE_NO_STORE, type CachePolicy } from "./cache-policy";
import { BOOKMARK_HEADER } from "./d1-session";
import type { HopMeter } from "./hops";
import { errorFields, log } from "./logger";
import { isPublicRead } from "./request-user";

/** What the edge-cache middleware reads from the Hono context (the app's `AppEnv` has it all). */
export interface EdgeCacheEnv {
  Variables: { meter: HopMeter; config: { businessTimeZone: string }; requestId: string };
}

/** This data centre's catalogue generation lives in the cache itself (the Cache API is per data centre). */
const GENERATION_KEY = "https://edge-cache.internal/__catalogue-generation";

/**
 * This isolate's view of the generation, re-read from the cache at most once a second
 * (a lookup per read would double the cached path's cost); a bump made here updates it at once.
 */
const GENERATION_MEMO_MS = 1_000;
let generationMemo: { value: string; readAt: number } | undefined;
/** At most one generation bump per this interval for sale writes (orders, cancels, payments), per isolate. */
const SALE_BUMP_INTERVAL_MS = 1_000;
let lastSaleBump = -Infinity;

/**
 * Misses in flight in this isolate, by cache key: when a bucket turns under load, the
 * requests that arrive before the first answer is stored share that answer instead of each
 * reading D1 (one read per key per isolate, not one per waiting request).
 */
const inflight = new Map<string, Promise<{ body: ArrayBuffer; etag: string; contentType: string } | undefined>>();

async function generationOf(c: Context<EdgeCacheEnv>, store: Cache, at: number): Promise<string> {
  if (generationMemo && at - generationMemo.readAt < GENERATION_MEMO_MS) return generationMemo.value;
  const value = (await quietly(c, "generation read", async () => (await store.match(GENERATION_KEY))?.text())) ?? "0";
  generationMemo = { value, readAt: at };
  return value;
}

/** The Workers Cache API; absent outside workerd. */
const defaultCache = (): Cache | undefined => (typeof caches === "undefined" ? undefined : caches.default);

/** A strong ETag of the body bytes (the same bytes always get the same tag). */
async function etagOf(body: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  return `"${[...digest.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("")}"`;
}

/** RFC 9110 If-None-Match: `*` or a list of (weak-compared) tags. */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  const bare = (t: string) => t.trim().replace(/^W\//, "");
  return ifNoneMatch.split(",").some((t) => t.trim() === "*" || bare(t) === bare(etag));
}

/** Cache failures only cost speed: log and answer from the origin. */
async function quietly<T>(c: Context<EdgeCacheEnv>, what: string, work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (err) {
    log("warn", `edge cache ${what} failed`, { requestId: c.var.requestId, ...errorFields(err) });
    return undefined;
  }
}

function answer(c: Context<EdgeCacheEnv>, body: ArrayBuffer, etag: string, policy: CachePolicy, contentType: string) {
  const headers = { ETag: etag, "Cache-Control": policy.cacheControl, Vary: "Origin" };
  if (matches(c.req.header("if-none-match"), etag)) return c.body(null, 304, headers);
  return c.body(body, 200, { ...headers, "Content-Type": contentType });
}

/**
 * HTTP caching of the public catalogue reads (docs/ARCHITECTURE.md §1), served from `caches.default`
 * under versioned keys (src/shared/cache-policy.ts says how stale each may be):
 * - a hit answers without services or D1 (0 hops; `Server-Timing: cache;desc="hit"`);
 * - a request with `x-d1-bookmark` skips the lookup: it asked for at least that state;
 * - 200s get an ETag and `Cache-Control`; `If-None-Match` gets a 304; errors get `no-store`;
 * - every other `/api` answer is user-specific or a write: `private, no-store`, and a
 *   successful catalogue-changing write bumps this data centre's generation.
 */
export function edgeCache(now: () => number = Date.now, openCache: () => Cache | undefined = defaultCache): MiddlewareHandler<EdgeCacheEnv> {
  return async (c, next) => {
    const { method, path } = c.req;
    const store = openCache();
    if (!isPublicRead(method, path)) {
      await next();
      if (!c.res.headers.has("cache-control")) c.header("Cache-Control", PRIVATE_NO_STORE);
      if (store && c.res.status < 300 && changesCatalogue(method, path)) {
        const t = now();
        const admin = path.startsWith("/api/v1/admin/");
        // Orders, cancels and payments come in storms: one bump a second per isolate, after the answer,
        // is enough for "shows at once here" and keeps a Cache API write off every flash-sale request.
        if (!admin && t - lastSaleBump < SALE_BUMP_INTERVAL_MS) return;
        if (!admin) lastSaleBump = t;
        const value = String(t);
        generationMemo = { value, readAt: t };
        const bump = quietly(c, "generation bump", () => store.put(GENERATION_KEY, new Response(value, { headers: { "Cache-Control": "public, max-age=86400" } })));
        if (admin) await bump;
        else {
          try {
            c.executionCtx.waitUntil(bump);
          } catch {
            await bump; // no execution context (a direct app.request in a test)
          }
        }
      }
      return;
    }
    const at = now();
    const generation = store ? await generationOf(c, store, at) : "0";
    const policy = cachePolicyFor(path, at, c.var.config.businessTimeZone, generation);
    const key = cacheKeyOf(new URL(c.req.url), policy.version);
    const lookup = store !== undefined && method === "GET" && !c.req.header(BOOKMARK_HEADER)?.trim();
    if (lookup) {
      const hit = await quietly(c, "lookup", () => store.match(key));
      if (hit) {
        c.var.meter.cache = "hit";
        return answer(c, await hit.arrayBuffer(), hit.headers.get("etag") ?? "", policy, hit.headers.get("content-type") ?? "application/json");
      }
    }
    const pending = lookup ? inflight.get(key) : undefined;
    const shared = pending ? await pending : undefined;
    if (shared) {
      c.var.meter.cache = "hit";
      return answer(c, shared.body, shared.etag, policy, shared.contentType);
    }
    c.var.meter.cache = lookup ? "miss" : "bypass";
    let settle: (v: { body: ArrayBuffer; etag: string; contentType: string } | undefined) => void = () => {};
    if (lookup) {
      inflight.set(key, new Promise((resolve) => (settle = resolve)));
    }
    try {
      await next();
    } finally {
      if (c.res.status !== 200) settle(undefined);
    }
    if (c.res.status !== 200) {
      if (lookup) inflight.delete(key);
      c.header("Cache-Control", "no-store");
      return;
    }
    const body = await c.res.arrayBuffer();
    const etag = await etagOf(body);
    const contentType = c.res.headers.get("content-type") ?? "application/json";
    settle({ body, etag, contentType });
    if (lookup) inflight.delete(key);
    if (store && method === "GET") {
      const copy = new Response(body, { headers: { "Content-Type": contentType, ETag: etag, "Cache-Control": `public, max-age=${policy.ttlS}` } });
      const put = quietly(c, "store", () => store.put(key, copy));
      try {
        c.executionCtx.waitUntil(put);
      } catch {
        await put; // no execution context (a direct app.request in a test)
      }
    }
    // The origin answer's body is consumed; `answer` rebuilds it with its headers plus ETag and Cache-Control.
    c.res = answer(c, body, etag, policy, contentType);
  };
}
