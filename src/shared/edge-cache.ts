import type { Context, MiddlewareHandler } from "hono";
import { cacheKeyOf, cachePolicyFor, changesCatalogue, PRIVATE_NO_STORE, type CachePolicy } from "./cache-policy";
import { CatalogueGeneration } from "./catalogue-generation";
import { BOOKMARK_HEADER } from "./d1-session";
import type { HopMeter } from "./hops";
import { errorFields, log } from "./logger";
import { isPublicRead } from "./request-user";

/** What the edge-cache middleware reads from the Hono context (the app's `AppEnv` has it all). */
export interface EdgeCacheEnv {
  Variables: { meter: HopMeter; config: { businessTimeZone: string }; requestId: string };
}

/** Where this data centre's catalogue generation lives, under the request's own origin (the Cache API is per data centre). */
const generationKeyOf = (url: URL) => `${url.origin}/__edge-cache/catalogue-generation`;

/**
 * Longest a miss waits for the same key's miss already in flight before it reads for itself:
 * far above a healthy origin read, and it bounds what a first request that never finishes
 * (its client went away and the runtime never resumed it) can cost the requests behind it.
 */
export const INFLIGHT_WAIT_MS = 2_000;

/** A cacheable answer as shared between the misses of one key. */
interface Shared {
  body: ArrayBuffer;
  etag: string;
  contentType: string;
}

/** A miss in flight: its answer (undefined when it is not cacheable) and the instant after which nobody waits for it. */
interface InFlight {
  answer: Promise<Shared | undefined>;
  deadline: number;
}

/** Test seams and dependencies of the edge cache; every field has a production default. */
export interface EdgeCacheOptions {
  now?: () => number;
  /** The Workers Cache API (`caches.default`); undefined outside workerd. */
  openCache?: () => Cache | undefined;
  /** Resolves after `ms`: the deferred generation bump and the in-flight deadline. */
  wait?: (ms: number) => Promise<void>;
  /** How long after a sale write D1 shows it (src/shared/catalogue-generation.ts); default 0. */
  saleSettleMs?: number;
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

/** Runs `work` after the answer (`waitUntil`), or inline when there is no execution context (a direct app.request in a test). */
async function afterAnswer(c: Context<EdgeCacheEnv>, work: Promise<unknown>): Promise<void> {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    await work;
  }
}

/**
 * HTTP caching of the public catalogue reads (docs/ARCHITECTURE.md §1), served from `caches.default`
 * under versioned keys on the request's own origin (src/shared/cache-policy.ts says how
 * stale each may be; the Cache API does nothing on `*.workers.dev`, only on a custom domain):
 * - a hit answers without services or D1 (0 hops; `Server-Timing: cache;desc="hit"`);
 * - concurrent misses of one key in this isolate share the first one's answer, waiting for it
 *   at most INFLIGHT_WAIT_MS;
 * - a request with `x-d1-bookmark` skips the lookup: it asked for at least that state;
 * - 200s get an ETag and `Cache-Control`; `If-None-Match` gets a 304; errors get `no-store`;
 * - every other `/api` answer is user-specific or a write: `private, no-store`, and a
 *   successful catalogue-changing write bumps this data centre's generation
 *   (src/shared/catalogue-generation.ts: admin writes at once, a sale once D1 shows it).
 */
export function edgeCache(options: EdgeCacheOptions = {}): MiddlewareHandler<EdgeCacheEnv> {
  const now = options.now ?? Date.now;
  const openCache = options.openCache ?? defaultCache;
  const wait = options.wait ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  // Per middleware instance, i.e. per isolate in production (the Worker builds one app).
  const generation = new CatalogueGeneration({ now, wait, settleMs: options.saleSettleMs ?? 0 });
  const inflight = new Map<string, InFlight>();

  return async (c, next) => {
    const { method, path } = c.req;
    const store = openCache();
    if (!isPublicRead(method, path)) {
      await next();
      if (!c.res.headers.has("cache-control")) c.header("Cache-Control", PRIVATE_NO_STORE);
      if (store && c.res.status < 300 && changesCatalogue(method, path)) {
        const admin = path.startsWith("/api/v1/admin/");
        const key = generationKeyOf(new URL(c.req.url));
        const bump = generation.changed(admin ? "admin" : "sale", async (value) => {
          await quietly(c, "generation bump", () =>
            store.put(key, new Response(value, { headers: { "Cache-Control": "public, max-age=86400" } })),
          );
        });
        // An admin sees its change on its next read anywhere here; sale writes bump after the answer.
        if (bump && admin) await bump;
        else if (bump) await afterAnswer(c, bump);
      }
      return;
    }
    const url = new URL(c.req.url);
    const at = now();
    const version = store
      ? await generation.read(at, () => quietly(c, "generation read", async () => (await store.match(generationKeyOf(url)))?.text()))
      : "0";
    const policy = cachePolicyFor(path, at, c.var.config.businessTimeZone, version);
    const key = cacheKeyOf(url, policy.version);
    const lookup = store !== undefined && method === "GET" && !c.req.header(BOOKMARK_HEADER)?.trim();
    if (lookup) {
      const hit = await quietly(c, "lookup", () => store.match(key));
      if (hit) {
        c.var.meter.cache = "hit";
        return answer(
          c,
          await hit.arrayBuffer(),
          hit.headers.get("etag") ?? "",
          policy,
          hit.headers.get("content-type") ?? "application/json",
        );
      }
    }
    let ahead = lookup ? inflight.get(key) : undefined;
    if (ahead && at >= ahead.deadline) {
      // Abandoned: its request never finished. The next miss replaces it.
      inflight.delete(key);
      ahead = undefined;
    }
    const shared = ahead ? await Promise.race([ahead.answer, wait(ahead.deadline - at).then(() => undefined)]) : undefined;
    if (shared) {
      c.var.meter.cache = "hit";
      return answer(c, shared.body, shared.etag, policy, shared.contentType);
    }
    c.var.meter.cache = lookup ? "miss" : "bypass";
    let settle: (v: Shared | undefined) => void = () => {};
    let mine: InFlight | undefined;
    // A miss that gave up waiting takes the key over from the one it waited for.
    if (lookup && (!inflight.has(key) || inflight.get(key) === ahead)) {
      mine = { answer: new Promise((resolve) => (settle = resolve)), deadline: now() + INFLIGHT_WAIT_MS };
      inflight.set(key, mine);
    }
    const release = () => {
      if (mine && inflight.get(key) === mine) inflight.delete(key);
    };
    try {
      await next();
    } finally {
      if (c.res.status !== 200) {
        settle(undefined);
        release();
      }
    }
    if (c.res.status !== 200) {
      c.header("Cache-Control", "no-store");
      return;
    }
    const body = await c.res.arrayBuffer();
    const etag = await etagOf(body);
    const contentType = c.res.headers.get("content-type") ?? "application/json";
    settle({ body, etag, contentType });
    release();
    if (store && method === "GET") {
      const copy = new Response(body, {
        headers: { "Content-Type": contentType, ETag: etag, "Cache-Control": `public, max-age=${policy.ttlS}` },
      });
      await afterAnswer(
        c,
        quietly(c, "store", () => store.put(key, copy)),
      );
    }
    // The origin answer's body is consumed; `answer` rebuilds it with its headers plus ETag and Cache-Control.
    c.res = answer(c, body, etag, policy, contentType);
  };
}
