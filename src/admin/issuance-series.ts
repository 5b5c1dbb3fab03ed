import type { CouponsRepo } from "../coupons/coupons.repo";
import { AppError } from "../shared/errors";
import type { AdminListsRepo } from "./admin-lists.repo";

/** Bucket widths the series offers, in seconds (a chart picks the narrowest that fits its window in MAX_BUCKETS). */
export const ISSUANCE_BUCKET_SECONDS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600] as const;
export type IssuanceBucketSeconds = (typeof ISSUANCE_BUCKET_SECONDS)[number];

/** Buckets one answer spans at most: a longer span is cut and `nextFrom` says where to go on. */
export const ISSUANCE_MAX_BUCKETS = 900;

export interface IssuanceSeries {
  couponId: number;
  startsAt: number;
  endsAt: number;
  bucketSeconds: IssuanceBucketSeconds;
  /** The span answered, [from, to): `from` aligned down to a bucket, `to` = now, the window's end or the cut. */
  from: number;
  to: number;
  /** Buckets with at least one win, oldest first (an absent bucket had none). */
  buckets: { at: number; issued: number }[];
  /** Wins in the span. */
  issued: number;
  /** Where the next call goes on when the span was cut at ISSUANCE_MAX_BUCKETS; null when it reached `to`'s limit. */
  nextFrom: number | null;
}

/**
 * The span one series call answers: from `from` (default: the window's opening; never before it) aligned
 * down to the bucket, to the earliest of now, the window's end and ISSUANCE_MAX_BUCKETS buckets later.
 */
export function issuanceSpan(
  window: { startsAt: number; endsAt: number },
  bucketMs: number,
  now: number,
  from?: number,
): { from: number; to: number; cut: boolean } {
  const start = Math.floor(Math.max(window.startsAt, from ?? window.startsAt) / bucketMs) * bucketMs;
  const limit = Math.min(now + 1, window.endsAt);
  const cap = start + ISSUANCE_MAX_BUCKETS * bucketMs;
  return { from: start, to: Math.max(start, Math.min(limit, cap)), cut: cap < limit };
}

/**
 * A coupon's issuances over time, from D1's wins (each is written there before it is answered), for the
 * operator console's chart "since the window opened". Reads the coupon's row and one index entry per win
 * in the span: a console that asks again only from its last bucket reads what is new.
 */
export async function issuanceSeries(
  deps: { coupons: CouponsRepo; lists: AdminListsRepo; clock: () => number },
  couponId: number,
  bucketSeconds: IssuanceBucketSeconds,
  from?: number,
): Promise<IssuanceSeries> {
  const coupon = await deps.coupons.findById(couponId);
  if (!coupon) throw new AppError("COUPON_NOT_FOUND");
  const bucketMs = bucketSeconds * 1000;
  const span = issuanceSpan(coupon, bucketMs, deps.clock(), from);
  const rows = span.to > span.from ? await deps.lists.issuanceBuckets(couponId, span.from, span.to, bucketMs) : [];
  return {
    couponId,
    startsAt: coupon.startsAt,
    endsAt: coupon.endsAt,
    bucketSeconds,
    from: span.from,
    to: span.to,
    buckets: rows.map((r) => ({ at: r.bucket * bucketMs, issued: r.issued })),
    issued: rows.reduce((n, r) => n + r.issued, 0),
    nextFrom: span.cut ? span.to : null,
  };
}
