import { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { methodNotAllowed } from "hono/method-not-allowed";
import { matchedRoutes } from "hono/route";
import type { Context } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { adminRoutes } from "./admin/admin.routes";
import { adminListRoutes } from "./admin/admin-lists.routes";
import { deadLetterRoutes } from "./admin/dead-letters.routes";
import { stockShardRoutes } from "./admin/stock-shards.routes";
import { d1GroupRoutes } from "./admin/d1-groups.routes";
import { statsRoutes } from "./admin/stats.routes";
import { issuanceSeriesRoutes } from "./admin/issuance-series.routes";
import { healthRoutes } from "./admin/health.routes";
import { requireAdmin } from "./admin/admin-auth";
import { loadConfig } from "./config";
import { addEdgeConventions } from "./openapi";
import { couponsRoutes } from "./coupons/coupons.routes";
import { ordersRoutes } from "./orders/orders.routes";
import { paymentRoutes } from "./orders/payment.routes";
import { pointsRoutes } from "./points/points.routes";
import { productsRoutes } from "./products/products.routes";
import { rankingsRoutes } from "./rankings/rankings.routes";
import { createServices } from "./services";
import { consoleRoutes } from "./console/console.routes";
import { docsRoutes } from "./docs/docs.routes";
import { errorResponse } from "./shared/envelope";
import { AppError } from "./shared/errors";
import type { AppEnv } from "./app-env";
import { errorFields, log } from "./shared/logger";
import { requireUserIdentity } from "./shared/identity";
import { DEFAULT_IDEMPOTENCY_OPTIONS, idempotentPosts, KeyTakenError, type IdempotencyOptions } from "./shared/idempotency";
import { limitWritesByIp, limitWritesByUser } from "./shared/rate-limit";
import { HopMeter, ObjectUnavailableError } from "./shared/hops";
import { BOOKMARK_HEADER, sessionStartFor } from "./shared/d1-session";
import { edgeCache } from "./shared/edge-cache";
import { PROJECTION_DELAY_MS, PROJECTION_LAG_MS } from "./products/stock-projector";
import { D1UnavailableError } from "./shared/group-commit";
import { analyticsMetrics } from "./shared/metrics";
import { requestIdFromRay } from "./shared/request-id";
import { isTransientD1Error, transientD1Cause } from "./shared/d1-errors";

/** Request bodies above this are refused with 413 before they are parsed. */
export const MAX_BODY_BYTES = 64 * 1024;

const JSON_CONTENT_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i;

/** Maps anything thrown during a request to one AppError (the only thing clients see). */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof ObjectUnavailableError || err instanceof D1UnavailableError || isTransientD1Error(err))
    return new AppError("SERVICE_UNAVAILABLE", undefined, { "Retry-After": "1" });
  if (err instanceof HTTPException) {
    if (err.status === 400) return new AppError("VALIDATION_FAILED", "body: malformed JSON");
    if (err.status === 401) return new AppError("UNAUTHORIZED");
    if (err.status === 403) return new AppError("FORBIDDEN");
    if (err.status === 413) return new AppError("PAYLOAD_TOO_LARGE");
    if (err.status === 415) return new AppError("UNSUPPORTED_MEDIA_TYPE");
    if (err.status === 429) return new AppError("RATE_LIMITED");
  }
  return new AppError("INTERNAL_ERROR");
}

/**
 * Routes whose use case writes the Idempotency-Key in the same D1 batch as its
 * effect (money moves or stock is committed); every other keyed route stores its
 * answer after the fact, which is safe because those effects are idempotent anyway.
 */
const KEY_IN_EFFECT_BATCH: ReadonlySet<string> = new Set(["POST /api/v1/points/charge", "POST /api/v1/points/use", "POST /api/v1/orders"]);

/** The template of the route that served the request (`/api/v1/coupons/:couponId/issue`), or `unmatched`. */
function routeTemplate(c: Context): string {
  const route = matchedRoutes(c).findLast((r) => r.method !== "ALL");
  return route?.path ?? "unmatched";
}

/** Test seams of the edge guards: the clock of rate-limit windows and idempotency expiry, the wait for an in-flight twin. */
export interface AppOptions {
  now?: () => number;
  /** The edge cache's timer (its trailing generation bump and in-flight deadline); default: setTimeout. */
  wait?: (ms: number) => Promise<void>;
  idempotency?: Partial<IdempotencyOptions>;
  /** Share D1 write batches across concurrent requests (src/services.ts ServicesOptions); default: when the runtime allows it. */
  shareWriteBatches?: boolean;
}

/**
 * Builds the Hono app: request id, logs, headers, 405/404/413/415 handling,
 * per-request services, edge guards (IP rate limit, identity, user rate limit,
 * idempotency keys), the `/api/v1` routers, `/openapi.json`, `/docs`, `/health`.
 */
export function createApp(options: AppOptions = {}) {
  const now = options.now ?? Date.now;
  const app = new OpenAPIHono<AppEnv>();

  app.use("*", requestIdFromRay());
  app.use("*", async (c, next) => {
    const started = Date.now();
    const meter = new HopMeter();
    c.set("meter", meter);
    await next();
    c.header("Server-Timing", meter.serverTiming());
    const ms = Date.now() - started;
    const status = c.res.status;
    const errorCode = c.var.errorCode;
    // A 503 is an honest "try again" (an object or D1 under pressure, logged at warn by onError), not a bug.
    log(status >= 500 && status !== 503 ? "error" : status === 503 ? "warn" : "info", "request", {
      requestId: c.var.requestId,
      method: c.req.method,
      path: c.req.path,
      status,
      ...(errorCode ? { errorCode } : {}),
      ms,
      ...meter.logFields(),
    });
    // One Analytics Engine data point per API request (src/shared/metrics.ts; docs/OPERATIONS.md).
    if (c.req.path.startsWith("/api/")) {
      const d1 = meter.d1Cost();
      analyticsMetrics(c.env.METRICS as AnalyticsEngineDataset | undefined).request({
        method: c.req.method,
        route: routeTemplate(c),
        status,
        errorCode,
        cache: meter.cache,
        requestId: c.var.requestId,
        colo: typeof c.req.raw.cf?.colo === "string" ? c.req.raw.cf.colo : undefined,
        hops: meter.hops,
        ms,
        d1WriteTx: d1.writeTx,
        d1Calls: d1.calls,
        doCalls: meter.calls.do,
        d1RowsRead: d1.rowsRead,
        d1RowsWritten: d1.rowsWritten,
      });
    }
  });
  app.use("*", secureHeaders({ crossOriginResourcePolicy: false }));
  app.use("*", async (c, next) => {
    c.set("config", loadConfig(c.env));
    await next();
  });
  app.use("/api/*", async (c, next) => {
    const origins = c.var.config.allowedOrigins;
    if (origins.length === 0) return next();
    return cors({
      origin: origins,
      allowHeaders: ["Content-Type", "Authorization", "Idempotency-Key", BOOKMARK_HEADER, "If-None-Match"],
      exposeHeaders: [
        "X-Request-Id",
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Idempotent-Replayed",
        "Server-Timing",
        BOOKMARK_HEADER,
        "ETag",
      ],
    })(c, next);
  });
  app.use(
    "*",
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        errorResponse(c, new AppError("METHOD_NOT_ALLOWED", `허용된 메서드: ${methods.join(", ")}`, { Allow: methods.join(", ") })),
    }),
  );
  app.use("/api/*", async (c, next) => {
    const method = c.req.method;
    // A method no route of this path takes is 405 (methodNotAllowed, after next()), whatever the
    // body's type: only a request some handler would serve is held to the JSON content type.
    const served = matchedRoutes(c).some((r) => r.method === method);
    if (served && (method === "POST" || method === "PUT" || method === "PATCH")) {
      const type = c.req.header("content-type");
      if (!type || !JSON_CONTENT_TYPE.test(type)) throw new AppError("UNSUPPORTED_MEDIA_TYPE");
    }
    await next();
  });
  app.use(
    "/api/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new AppError("PAYLOAD_TOO_LARGE");
      },
    }),
  );
  // Before the services: a cached catalogue read answers without building them or touching D1.
  // A sale's stock reaches D1 through the objects' write-behind projection: its generation bump waits for that.
  app.use("/api/*", edgeCache({ now, wait: options.wait, saleSettleMs: PROJECTION_LAG_MS + PROJECTION_DELAY_MS }));
  app.use("/api/*", async (c, next) => {
    const services = createServices(c.env, c.var.config, {
      ctx: c.executionCtx,
      meter: c.var.meter,
      start: sessionStartFor(c),
      shareWriteBatches: options.shareWriteBatches,
    });
    c.set("services", services);
    await next();
    // Also on errors: a refused write may still have read or written something.
    const bookmark = services.session.bookmark();
    if (bookmark) c.header(BOOKMARK_HEADER, bookmark);
  });

  // Order matters: the IP limit also sees unauthenticated floods; identity runs before the
  // body-keyed guards; idempotency last, so a replay never skips identity or limits.
  app.use("/api/v1/*", limitWritesByIp(now));
  app.use("/api/v1/*", requireUserIdentity);
  app.use("/api/v1/*", limitWritesByUser(now));
  app.use("/api/v1/*", idempotentPosts({ ...DEFAULT_IDEMPOTENCY_OPTIONS, now, ...options.idempotency }, KEY_IN_EFFECT_BATCH));
  app.use("/api/v1/admin/*", requireAdmin);
  // Chained, so the app's type carries every route's request and response types: `AppType`, for hono/client.
  const routed = app
    .route("/api/v1/points", pointsRoutes)
    .route("/api/v1/products", rankingsRoutes)
    .route("/api/v1/products", productsRoutes)
    .route("/api/v1/coupons", couponsRoutes)
    .route("/api/v1/admin", adminRoutes)
    .route("/api/v1/admin", adminListRoutes)
    .route("/api/v1/admin", deadLetterRoutes)
    .route("/api/v1/admin", stockShardRoutes)
    .route("/api/v1/admin", statsRoutes)
    .route("/api/v1/admin", d1GroupRoutes)
    .route("/api/v1/admin", issuanceSeriesRoutes)
    .route("/api/v1/admin", healthRoutes)
    .route("/api/v1/orders", ordersRoutes)
    .route("/api/v1/points", paymentRoutes);

  app.get("/health", (c) => c.json({ status: "ok" }));

  app.openAPIRegistry.registerComponent("securitySchemes", "adminBearer", {
    type: "http",
    scheme: "bearer",
    description: "ADMIN_TOKEN",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "userBearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description:
      "HS256 JWT signed with JWT_SECRET; `sub` = the request's userId. Enforced when JWT_SECRET is set; without it, open in local development only (a deployed environment answers 503 MISCONFIGURED).",
  });
  // Built on the first request for it, not at startup, then kept for the isolate's life.
  let document: Record<string, unknown> | undefined;
  app.get("/openapi.json", (c) => {
    document ??= addEdgeConventions(
      app.getOpenAPI31Document({
        openapi: "3.1.0",
        info: {
          title: "Edge Commerce API",
          version: "1.0.0",
          description:
            "Points, products, first-come coupons, orders and rankings on Cloudflare Workers. " +
            "Every response is an envelope `{code, message, data}` or `{code, error, message, detail}`.",
        },
        servers: [{ url: "/" }],
        // User routes need a user JWT when JWT_SECRET is set; catalogue reads opt out, admin routes override.
        security: [{ userBearer: [] }],
      }) as unknown as Record<string, unknown>,
    );
    return c.json(document);
  });
  // Pages outside /api: the docs UI and the operator console, with every asset served from here (no CDN).
  app.route("/", docsRoutes);
  app.route("/", consoleRoutes);

  app.notFound((c) => errorResponse(c, new AppError("NOT_FOUND")));
  app.onError((err, c) => {
    const appErr = toAppError(err);
    // A taken Idempotency-Key is answered by the idempotency middleware (a replay), not here.
    if (err instanceof KeyTakenError) return errorResponse(c, appErr);
    // A missing secret was logged once for the isolate (src/config.ts); a line per refusal would flood the log.
    if (appErr.code === "MISCONFIGURED") return errorResponse(c, appErr);
    if (appErr.code === "SERVICE_UNAVAILABLE") {
      const cause = err instanceof ObjectUnavailableError || err instanceof D1UnavailableError ? err.cause : transientD1Cause(err);
      log("warn", "service unavailable", {
        requestId: c.var.requestId,
        path: c.req.path,
        detail: appErr.detail,
        ...(cause === undefined ? {} : errorFields(cause)),
      });
    } else if (appErr.status >= 500) {
      log("error", "unhandled error", { requestId: c.var.requestId, path: c.req.path, ...errorFields(err) });
    }
    return errorResponse(c, appErr);
  });
  return routed;
}

/**
 * The API's routes as a type, for a typed client (README: typed client):
 * `hc<AppType>(baseUrl)` from `hono/client` gives every route's path, query, body and
 * per-status response types, taken from the same zod schemas that `/openapi.json` is built from
 * (so the client and the contract-tested document cannot disagree, and there is no generated file).
 */
export type AppType = ReturnType<typeof createApp>;
