import { addDays, businessDate, startOfBusinessDay } from "./clock";

/**
 * How long public catalogue reads may be served from the edge cache, and under which
 * versioned key (pure: no I/O). A key is only ever used while its version is current,
 * so the version bounds staleness whatever the cache does with the entry:
 * - `/products`, `/products/{id}`, `/products/top`: a 5 s time bucket plus the data
 *   centre's catalogue generation (bumped by every catalogue-changing write it serves),
 *   so a change shows at once where it was made and within 5 s everywhere else;
 * - `/products/best`: the best-seller period. The answer changes only when the business
 *   day turns and when the 00:30 refresh rewrites the snapshot, so it is cached until the
 *   next of those two instants.
 * - `/coupons/{id}` (a sale page's poll of what is left): a 1 s time bucket, no
 *   stale-while-revalidate, so a page polled by thousands costs the issuing objects one
 *   read a second per data centre and shows a count at most a second old.
 * User-specific answers are never cached (`private, no-store`).
 */
export const CATALOGUE_TTL_S = 5;
/** How long a coupon's availability may be served from the edge. */
export const COUPON_AVAILABILITY_TTL_S = 1;
/** How long a downstream cache may serve a stale copy while it revalidates. */
export const STALE_WHILE_REVALIDATE_S = 25;
/** The daily best-seller refresh, minutes after business midnight (cron `30 15 * * *` for Seoul). */
export const BEST_REFRESH_MINUTE = 30;

export const PRIVATE_NO_STORE = "private, no-store";

export interface CachePolicy {
  /** The version part of the cache key. */
  version: string;
  /** Seconds the answer may be shared (s-maxage), and so kept in the edge cache. */
  ttlS: number;
  cacheControl: string;
}

/** The best-seller period an instant falls in, and when it ends. */
export function bestSellerPeriod(now: number, timeZone: string): { id: string; endsAt: number } {
  const today = businessDate(now, timeZone);
  const refreshAt = startOfBusinessDay(today, timeZone) + BEST_REFRESH_MINUTE * 60_000;
  if (now < refreshAt) return { id: `${today}.early`, endsAt: refreshAt };
  return { id: `${today}.refreshed`, endsAt: startOfBusinessDay(addDays(today, 1), timeZone) };
}

const sharedFor = (ttlS: number, swrS: number) =>
  `public, max-age=0, s-maxage=${ttlS}${swrS > 0 ? `, stale-while-revalidate=${swrS}` : ""}`;

/** The policy of one public read path at `now`; `generation` is the data centre's catalogue generation. */
export function cachePolicyFor(path: string, now: number, timeZone: string, generation: string): CachePolicy {
  if (path === "/api/v1/products/best") {
    const period = bestSellerPeriod(now, timeZone);
    const ttlS = Math.max(1, Math.ceil((period.endsAt - now) / 1000));
    // No stale-while-revalidate: past the period end the old list is simply wrong.
    return { version: `best.${period.id}`, ttlS, cacheControl: sharedFor(ttlS, 0) };
  }
  if (path.startsWith("/api/v1/coupons/")) {
    const second = Math.floor(now / (COUPON_AVAILABILITY_TTL_S * 1000));
    return { version: `c${second}`, ttlS: COUPON_AVAILABILITY_TTL_S, cacheControl: sharedFor(COUPON_AVAILABILITY_TTL_S, 0) };
  }
  const bucket = Math.floor(now / (CATALOGUE_TTL_S * 1000));
  return {
    version: `t${bucket}.g${generation}`,
    ttlS: CATALOGUE_TTL_S,
    cacheControl: sharedFor(CATALOGUE_TTL_S, STALE_WHILE_REVALIDATE_S),
  };
}

/**
 * Writes after which catalogue answers (stock, ranking, products) may differ: admin
 * product changes, order placement and cancel (reserve/release stock), payment (sales).
 */
export function changesCatalogue(method: string, path: string): boolean {
  if (method !== "POST" && method !== "PATCH" && method !== "PUT") return false;
  return path.startsWith("/api/v1/admin/products") || path.startsWith("/api/v1/orders") || path === "/api/v1/points/use";
}

/**
 * The cache key of a request: its own origin and path, sorted query, version. A real
 * hostname, as Cloudflare asks of cache keys (and each hostname's answers apart).
 */
export function cacheKeyOf(url: URL, version: string): string {
  const params = [...url.searchParams.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const query = new URLSearchParams(params);
  query.set("__v", version);
  return `${url.origin}${url.pathname}?${query.toString()}`;
}
