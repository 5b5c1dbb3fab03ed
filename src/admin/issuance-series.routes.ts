import { createRoute, z } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import { idParamSchema } from "../shared/validation";
import { toIso } from "../shared/clock";
import type { AppEnv } from "../app-env";
import { ISSUANCE_BUCKET_SECONDS, ISSUANCE_MAX_BUCKETS, issuanceSeries, type IssuanceBucketSeconds } from "./issuance-series";

const security = [{ adminBearer: [] }];

const QuerySchema = z.strictObject({
  from: z.iso
    .datetime()
    .optional()
    .openapi({ description: "Start of the span (default and earliest: the coupon's `startsAt`); aligned down to a bucket" }),
  bucketSeconds: z
    .enum(ISSUANCE_BUCKET_SECONDS.map(String) as [string, ...string[]])
    .optional()
    .transform((v) => Number(v ?? 1) as IssuanceBucketSeconds)
    .openapi({ type: "integer", enum: [...ISSUANCE_BUCKET_SECONDS], default: 1, description: "Bucket width in seconds" }),
});

const IssuanceSeriesSchema = z
  .object({
    couponId: z.number().int(),
    startsAt: z.string().openapi({ format: "date-time" }),
    endsAt: z.string().openapi({ format: "date-time" }),
    bucketSeconds: z.number().int(),
    from: z.string().openapi({ format: "date-time", description: "Start of the span answered (inclusive)" }),
    to: z.string().openapi({ format: "date-time", description: "End of the span answered (exclusive): now, the window's end or the cut" }),
    buckets: z
      .array(z.object({ at: z.string().openapi({ format: "date-time" }), issued: z.number().int().min(1) }))
      .openapi({ description: "Buckets with at least one win, oldest first; a bucket not listed had none" }),
    issued: z.number().int().min(0).openapi({ description: "Wins in the span" }),
    nextFrom: z
      .string()
      .nullable()
      .openapi({
        format: "date-time",
        description: `Set when the span was cut at ${ISSUANCE_MAX_BUCKETS} buckets: pass as \`from\` to go on`,
      }),
  })
  .openapi("IssuanceSeries");

const seriesRoute = createRoute({
  method: "get",
  path: "/coupons/{couponId}/issuances",
  tags: ["admin"],
  security,
  summary: `A coupon's wins per bucket since its window opened (at most ${ISSUANCE_MAX_BUCKETS} buckets an answer; reads one index entry per win in the span)`,
  request: { params: z.object({ couponId: idParamSchema }), query: QuerySchema },
  responses: {
    ...okResponse(200, "Wins per bucket", IssuanceSeriesSchema),
    ...errorResponses(400, 401, 403, 404),
  },
});

/** `/api/v1/admin/coupons/{couponId}/issuances` (the operator console's chart). */
export const issuanceSeriesRoutes = createRouter<AppEnv>().openapi(seriesRoute, async (c) => {
  const { couponId } = c.req.valid("param");
  const { from, bucketSeconds } = c.req.valid("query");
  const s = c.var.services;
  const series = await issuanceSeries(
    { coupons: s.couponsRepo, lists: s.adminLists, clock: s.clock },
    couponId,
    bucketSeconds,
    from === undefined ? undefined : Date.parse(from),
  );
  return ok(c, {
    ...series,
    startsAt: toIso(series.startsAt),
    endsAt: toIso(series.endsAt),
    from: toIso(series.from),
    to: toIso(series.to),
    buckets: series.buckets.map((b) => ({ at: toIso(b.at), issued: b.issued })),
    nextFrom: series.nextFrom === null ? null : toIso(series.nextFrom),
  });
});
