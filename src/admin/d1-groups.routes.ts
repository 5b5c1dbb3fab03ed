import { createRoute } from "@hono/zod-openapi";
import { ok } from "../shared/envelope";
import { createRouter, errorResponses, okResponse } from "../shared/http";
import type { AppEnv } from "../app-env";
import { D1GroupsSchema } from "./admin.schemas";

const d1GroupsRoute = createRoute({
  method: "get",
  path: "/d1-groups",
  tags: ["admin"],
  security: [{ adminBearer: [] }],
  summary:
    "This isolate's group-commit queues: D1 batches sent per kind of write and requests in them (counters since the isolate started)",
  responses: {
    ...okResponse(200, "Counters per kind", D1GroupsSchema),
    ...errorResponses(401, 403),
  },
});

/**
 * `/api/v1/admin/d1-groups` (behind the admin token, app.ts). Writes made after the answer
 * (e.g. `orders.settle`) never reach a response's Server-Timing; the benchmarks read them here.
 */
export const d1GroupRoutes = createRouter<AppEnv>().openapi(d1GroupsRoute, (c) => ok(c, { kinds: c.var.services.d1Groups() }));
