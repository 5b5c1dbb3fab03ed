/**
 * The edge conventions every `/api/v1` operation shares, added to the generated OpenAPI
 * document in one place rather than repeated in each route: the headers the middleware
 * reads and writes (x-d1-bookmark, Idempotency-Key, If-None-Match, Server-Timing,
 * X-Request-Id, Cache-Control, ETag, Retry-After, RateLimit-*) and the answers the guards give
 * (401/403 identity, 429 write limits, 503 unreachable objects or a missing secret, 304 revalidation).
 * The contract test (test/contract/) calls every operation and checks each answer
 * against what is declared here.
 */
import { isPublicRead } from "./shared/request-user";

// biome-ignore lint/suspicious/noExplicitAny: the generated OpenAPI document is walked as plain JSON
type Json = Record<string, any>;

const ERROR = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } };
const h = (name: string) => ({ $ref: `#/components/headers/${name}` });
const p = (name: string) => ({ $ref: `#/components/parameters/${name}` });

const HEADERS: Json = {
  XRequestId: { description: "Correlates this answer with the JSON log line.", schema: { type: "string" } },
  ServerTiming: {
    description:
      'Round trips of this request: `d1`, `do`, `redis` calls with durations, `cache;desc="hit|miss|bypass"` on catalogue reads, and `hops;desc="N sequential"`.',
    schema: { type: "string" },
  },
  D1Bookmark: {
    description:
      "The D1 session's latest bookmark, when the request touched D1. Send it back as `x-d1-bookmark` to read at least this state (your own writes), even from a replica.",
    schema: { type: "string" },
  },
  CacheControl: {
    description: "`public, max-age=0, s-maxage=…` on catalogue reads; `private, no-store` on user-specific answers; `no-store` on errors.",
    schema: { type: "string" },
  },
  ETag: { description: "Strong tag of the body; send it as `If-None-Match` to get a 304.", schema: { type: "string" } },
  RetryAfter: { description: "Seconds to wait before retrying.", schema: { type: "string" } },
  RateLimitLimit: {
    description: "The write limit that refused this request, per minute (IETF draft-ietf-httpapi-ratelimit-headers).",
    schema: { type: "string" },
  },
  RateLimitRemaining: { description: "Writes left in the window: `0` on a 429.", schema: { type: "string" } },
  RateLimitReset: { description: "Seconds until the window ends (equal to Retry-After).", schema: { type: "string" } },
  IdempotentReplayed: {
    description: "`true` when this is the stored answer of an earlier request with the same Idempotency-Key.",
    schema: { type: "string" },
  },
};

const PARAMETERS: Json = {
  D1Bookmark: {
    name: "x-d1-bookmark",
    in: "header",
    required: false,
    description:
      "A bookmark from an earlier answer: this request's D1 session starts from it (read-your-writes). Malformed: 400 VALIDATION_FAILED. Skips the edge cache.",
    schema: { type: "string", pattern: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{8}-[0-9a-fA-F]{8}-[0-9a-fA-F]{32}$" },
  },
  IdempotencyKey: {
    name: "Idempotency-Key",
    in: "header",
    required: false,
    description: "1..255 printable ASCII characters. The same key, user, route and body within 24 h replays the first answer.",
    schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x20-\\x7E]+$" },
  },
  IfNoneMatch: {
    name: "If-None-Match",
    in: "header",
    required: false,
    description: "An ETag from an earlier answer: 304 when it is still current.",
    schema: { type: "string" },
  },
};

/** Operations that call a Durable Object (stock, coupon issuer): 503 with Retry-After when it is unreachable. */
const OBJECT_BACKED = new Set([
  "post /api/v1/coupons/issue",
  "post /api/v1/coupons/{couponId}/issue",
  "post /api/v1/orders",
  "post /api/v1/orders/{orderId}/cancel",
  "post /api/v1/points/use",
  "patch /api/v1/admin/products/{productId}/stock",
  "put /api/v1/admin/products/{productId}/stock-shards",
  "get /api/v1/admin/products/{productId}/stock-shards",
  "patch /api/v1/admin/coupons/{couponId}",
  "post /api/v1/admin/coupons",
  "put /api/v1/admin/coupons/{couponId}/shards",
  "get /api/v1/admin/coupons/{couponId}/shards",
  "get /api/v1/coupons/{couponId}",
  // D1 or its CouponIssuer probe failing is this route's 503 (src/admin/health.routes.ts).
  "get /api/v1/admin/health",
]);

const isWrite = (method: string) => method === "post" || method === "patch" || method === "put";

function errorAnswer(description: string, headers: Json = {}) {
  return { description, headers, content: ERROR };
}

/** Adds the shared headers, parameters and guard answers to every operation of `doc` (in place). */
export function addEdgeConventions(doc: Json): Json {
  doc.components ??= {};
  doc.components.headers = { ...doc.components.headers, ...HEADERS };
  doc.components.parameters = { ...doc.components.parameters, ...PARAMETERS };
  for (const [path, item] of Object.entries<Json>(doc.paths ?? {})) {
    if (!path.startsWith("/api/v1/")) continue;
    for (const [method, op] of Object.entries<Json>(item)) {
      const key = `${method} ${path}`;
      const admin = path.startsWith("/api/v1/admin/");
      // The same rule the middleware applies to a request's path (the template matches it as a path would).
      const publicRead = isPublicRead(method.toUpperCase(), path);
      op.parameters ??= [];
      const params: Json[] = op.parameters;
      params.push(p("D1Bookmark"));
      const r: Json = op.responses;
      if (publicRead) {
        params.push(p("IfNoneMatch"));
        r["304"] = {
          description: "Not modified: the If-None-Match tag is current.",
          headers: { ETag: h("ETag"), "Cache-Control": h("CacheControl") },
        };
        r["200"].headers = { ...r["200"].headers, ETag: h("ETag") };
      } else if (!admin) {
        r["401"] ??= errorAnswer("UNAUTHORIZED: JWT_SECRET is set and the Bearer token is missing, malformed, forged or expired.", {
          "WWW-Authenticate": { schema: { type: "string" } },
        });
        r["403"] ??= errorAnswer("FORBIDDEN: the token's `sub` is not the request's userId.");
      }
      if (isWrite(method) && !admin) {
        r["429"] ??= errorAnswer(
          "RATE_LIMITED: over RATE_LIMIT_WRITES_PER_MINUTE for this user or RATE_LIMIT_IP_WRITES_PER_MINUTE for this IP.",
          {
            "Retry-After": h("RetryAfter"),
            "RateLimit-Limit": h("RateLimitLimit"),
            "RateLimit-Remaining": h("RateLimitRemaining"),
            "RateLimit-Reset": h("RateLimitReset"),
          },
        );
        if (method === "post") {
          params.push(p("IdempotencyKey"));
          r["409"] ??= errorAnswer("Business refusal, or IDEMPOTENCY_KEY_REUSED / IDEMPOTENCY_KEY_IN_PROGRESS.");
        }
      }
      // Every route that takes an identity (user JWT or admin token) is closed when its secret is missing outside development.
      const unavailable = [
        ...(OBJECT_BACKED.has(key) ? ["SERVICE_UNAVAILABLE: a Durable Object was unreachable or overloaded; retry."] : []),
        ...(publicRead
          ? []
          : [
              `MISCONFIGURED: this deployment lacks ${admin ? "ADMIN_TOKEN" : "JWT_SECRET"} (only local development runs without it); retry once the operator has set it.`,
            ]),
      ];
      if (unavailable.length > 0) r["503"] ??= errorAnswer(unavailable.join(" "), { "Retry-After": h("RetryAfter") });
      for (const [status, answer] of Object.entries<Json>(r)) {
        answer.headers = {
          "X-Request-Id": h("XRequestId"),
          "Server-Timing": h("ServerTiming"),
          "Cache-Control": h("CacheControl"),
          ...answer.headers,
        };
        if (status !== "304") answer.headers["x-d1-bookmark"] = h("D1Bookmark");
        if (method === "post" && !admin && !publicRead) answer.headers["Idempotent-Replayed"] = h("IdempotentReplayed");
      }
    }
  }
  return doc;
}
