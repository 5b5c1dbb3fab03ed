import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { BestQuerySchema, BestSchema, TopQuerySchema, TopSchema } from "./rankings.schemas";

const topRoute = createRoute({
  method: "get",
  path: "/top",
  tags: ["products"],
  security: [],
  summary: "Today's ranking by paid quantity (business day in BUSINESS_TIMEZONE)",
  request: { query: TopQuerySchema },
  responses: {
    ...okResponse(200, "Ranking", TopSchema),
    ...errorResponses(400),
  },
});

const bestRoute = createRoute({
  method: "get",
  path: "/best",
  tags: ["products"],
  security: [],
  summary: "Top 5 products by paid quantity over the three business days before today",
  request: { query: BestQuerySchema },
  responses: {
    ...okResponse(200, "Best sellers", BestSchema),
    ...errorResponses(400),
  },
});

/** Mounted on `/api/v1/products` before the product routes, so `/top` and `/best` are not product ids. */
export const rankingsRoutes = createRouter<AppEnv>()
  .openapi(topRoute, async (c) => ok(c, await c.var.services.rankings.topToday(c.req.valid("query").size)))
  .openapi(bestRoute, async (c) => ok(c, await c.var.services.rankings.bestSellers()));
