/**
 * Workers Analytics Engine data points (binding `METRICS`, docs/OPERATIONS.md): what a
 * flash-sale operator charts per second or minute with the SQL API. Logs and traces are
 * sampled in production; these points are written for every request and event (Analytics
 * Engine samples at query time and says how, through `_sample_interval`).
 *
 * Layout, one dataset, `blob1` telling the kind of point:
 *
 * | field | request point | event point |
 * |---|---|---|
 * | index1 | `METHOD /route/:template` | `coupon:{id}` or `product:{id}` |
 * | blob1 | `request` | `coupon.issued`, `coupon.sold_out`, `stock.insufficient` |
 * | blob2 | `METHOD /route/:template` (`unmatched` for a 404 of no route) | the coupon or product id |
 * | blob3 | error code (`COUPON_SOLD_OUT`, `RATE_LIMITED`, ...), empty on success | |
 * | blob4 | edge cache `hit`/`miss`/`bypass`, empty when not a cacheable read | |
 * | blob5 | request id (`cf-ray`) | |
 * | blob6 | Cloudflare colo (`ICN`, ...) | |
 * | double1 | HTTP status | 1 |
 * | double2 | sequential hops (D1 and Durable Object round trips) | `stock.insufficient`: units the shard had left (0: sold out) |
 * | double3 | milliseconds in the Worker | |
 * | double4 | D1 write transactions | |
 * | double5..8 | D1 calls, DO calls, D1 rows read, D1 rows written | |
 *
 * Writing never throws into a request (a full or missing dataset is a lost point, not an error).
 */
import { log } from "./logger";

/**
 * `coupon.issued`: a win. `coupon.sold_out`: a CouponIssuer refused because every unit is gone
 * (not the isolate's remembered refusals that follow for a second: those are request points
 * with error COUPON_SOLD_OUT). `stock.insufficient`: a ProductStock refused an order line.
 */
export type MetricEvent = "coupon.issued" | "coupon.sold_out" | "stock.insufficient";

export interface RequestPoint {
  method: string;
  /** The matched route's template, e.g. `/api/v1/coupons/:couponId/issue`. */
  route: string;
  status: number;
  errorCode: string | undefined;
  cache: string | undefined;
  requestId: string;
  colo: string | undefined;
  hops: number;
  ms: number;
  d1WriteTx: number;
  d1Calls: number;
  doCalls: number;
  d1RowsRead: number;
  d1RowsWritten: number;
}

/** Port for the data points; `noMetrics` when no dataset is bound. */
export interface Metrics {
  request(point: RequestPoint): void;
  /** One business event about one coupon or product; `value` goes to double2 (e.g. stock left). */
  event(kind: MetricEvent, subjectId: number, value?: number): void;
}

export const noMetrics: Metrics = { request: () => {}, event: () => {} };

let writeFailureLogged = false;

/** Metrics written to an Analytics Engine dataset; a no-op without one (tests, `wrangler dev` without the binding). */
export function analyticsMetrics(dataset: AnalyticsEngineDataset | undefined): Metrics {
  if (!dataset) return noMetrics;
  const write = (point: AnalyticsEngineDataPoint) => {
    try {
      dataset.writeDataPoint(point);
    } catch (err) {
      // More than the runtime takes per invocation, or an oversized point: lose it, say so once.
      if (!writeFailureLogged) log("warn", "analytics engine write failed", { errMessage: String(err) });
      writeFailureLogged = true;
    }
  };
  return {
    request: (p) => {
      const name = `${p.method} ${p.route}`;
      write({
        indexes: [name.slice(0, 96)],
        blobs: ["request", name, p.errorCode ?? "", p.cache ?? "", p.requestId, p.colo ?? ""],
        doubles: [p.status, p.hops, p.ms, p.d1WriteTx, p.d1Calls, p.doCalls, p.d1RowsRead, p.d1RowsWritten],
      });
    },
    event: (kind, subjectId, value) => {
      const subject = kind === "stock.insufficient" ? "product" : "coupon";
      write({ indexes: [`${subject}:${subjectId}`], blobs: [kind, String(subjectId)], doubles: value === undefined ? [1] : [1, value] });
    },
  };
}
