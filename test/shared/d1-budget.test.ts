import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { JOBS } from "../../src/jobs";
import { d1CostOf, type D1Cost } from "../../src/shared/hops";
import { BOOKMARK_HEADER } from "../../src/shared/d1-session";
import { adminHeaders, api, type ApiResponse, createCoupon, createProduct, createUser } from "../support/http";
import { writeHistory } from "../support/history";

/**
 * D1 as a metered budget: rows read per request and per cron run grow with the work
 * done (a page, the due orders), never with the shop's history. Each route and each
 * cron runs once near empty and once after a miniature year of history is written;
 * the rows D1 reports (Server-Timing, the `job done` log line) must stay within a
 * small constant. Row counts are deterministic costs, so they are pinned exactly
 * where they are part of the design (a charge is one write transaction).
 */

afterEach(() => vi.restoreAllMocks());

/** History rows per table, far more than any page or batch the code reads. */
const HISTORY = { orders: 3_000, pointHistory: 3_000, userCoupons: 1_000, events: 3_000 };
/** Rows a request or a run may read more with the history than without it (SQLite's index probes differ by a row or two). */
const SLACK = 3;

type Step = { name: string; cost: D1Cost; status: number };

function costOf(name: string, res: ApiResponse): Step {
  const timing = res.headers.get("server-timing");
  expect(timing, name).not.toContain('cache;desc="hit"');
  return { name, cost: d1CostOf(timing), status: res.status };
}

type Fixture = { userId: number; productId: number; couponId: number };

/** A user, a product and a coupon per walk, all created before the first walk: the catalogue is the same size in every walk. */
async function fixtures(n: number): Promise<Fixture[]> {
  const out: Fixture[] = [];
  for (let i = 0; i < n; i++)
    out.push({
      userId: await createUser(1_000_000),
      productId: await createProduct(1_000, 50),
      couponId: await createCoupon({ quantity: 10 }),
    });
  return out;
}

/** Every public route once, for a fresh user, product and coupon; public reads carry a bookmark (no edge cache). */
async function walkRoutes({ userId, productId, couponId }: Fixture, variant: number): Promise<Step[]> {
  const steps: Step[] = [];
  const charge = await api.post("/api/v1/points/charge", { userId, amount: 1_000 });
  steps.push(costOf("POST /points/charge", charge));
  const fresh = { [BOOKMARK_HEADER]: charge.headers.get(BOOKMARK_HEADER) ?? "" };
  steps.push(costOf("GET /points", await api.get(`/api/v1/points?userId=${userId}`)));
  steps.push(costOf("GET /points/history", await api.get(`/api/v1/points/history?userId=${userId}&limit=20`)));
  steps.push(costOf("GET /products", await api.get(`/api/v1/products?page=0&size=${5 + variant}`, fresh)));
  steps.push(costOf("GET /products/{id}", await api.get(`/api/v1/products/${productId}`, fresh)));
  steps.push(costOf("GET /products/best", await api.get("/api/v1/products/best", fresh)));
  const issued = await api.post("/api/v1/coupons/issue", { userId, couponId });
  steps.push(costOf("POST /coupons/issue", issued));
  steps.push(costOf("GET /coupons", await api.get(`/api/v1/coupons?userId=${userId}`)));
  const order = await api.post("/api/v1/orders", {
    userId,
    userCouponId: issued.body.data.userCouponId,
    orderProducts: [{ productId, quantity: 1 }],
  });
  steps.push(costOf("POST /orders", order));
  const orderId = order.body.data.orderId;
  steps.push(costOf("GET /orders/{id}", await api.get(`/api/v1/orders/${orderId}?userId=${userId}`)));
  steps.push(costOf("POST /points/use", await api.post("/api/v1/points/use", { userId, orderId })));
  const second = await api.post("/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 2 }] });
  steps.push(costOf("POST /orders/{id}/cancel", await api.post(`/api/v1/orders/${second.body.data.orderId}/cancel`, { userId })));
  // The uptime check: bounded counts of the backlog, whatever the published history.
  steps.push(costOf("GET /admin/health", await api.get("/api/v1/admin/health", adminHeaders)));
  for (const s of steps) expect([200, 201], s.name).toContain(s.status);
  return steps;
}

/** Runs every cron once with nothing due and returns each job's D1 cost from its `job done` log line. */
async function walkJobs(): Promise<Step[]> {
  const spy = vi.spyOn(console, "log");
  for (const cron of Object.keys(JOBS)) {
    const ctx = createExecutionContext();
    await worker.scheduled!(createScheduledController({ cron, scheduledTime: Date.now() }), env, ctx);
    await waitOnExecutionContext(ctx);
  }
  const lines = spy.mock.calls.map((c) => JSON.parse(String(c[0]))).filter((l) => l.msg === "job done" || l.msg === "job failed");
  spy.mockRestore();
  expect(lines.map((l) => l.msg)).not.toContain("job failed");
  return lines.map((l) => ({
    name: `${l.cron} ${l.job}`,
    status: 200,
    cost: { calls: l.d1Calls, rowsRead: l.d1RowsRead, rowsWritten: l.d1RowsWritten, writeTx: l.d1WriteTx },
  }));
}

function compare(before: Step[], after: Step[]) {
  expect(after.map((s) => s.name)).toEqual(before.map((s) => s.name));
  const grew = after
    .map((s, i) => ({ name: s.name, before: before[i]!.cost.rowsRead, after: s.cost.rowsRead }))
    .filter((r) => r.after > r.before + SLACK);
  expect(grew, "rows read grew with history").toEqual([]);
}

describe("D1 rows per request and per job do not grow with history", () => {
  it("routes and crons read the same rows near empty and with a year of history", async () => {
    // Warm-up: the first request of an isolate may learn shard counts, the first cron run may find leftovers.
    const [warm, empty, year] = await fixtures(3);
    await walkRoutes(warm!, 0);
    await walkJobs();
    const routesEmpty = await walkRoutes(empty!, 1);
    const jobsEmpty = await walkJobs();

    await writeHistory(HISTORY, warm!.productId);

    const routesYear = await walkRoutes(year!, 2);
    const jobsYear = await walkJobs();
    compare(routesEmpty, routesYear);
    compare(jobsEmpty, jobsYear);

    // Pinned costs of the design: a charge and a payment are one write transaction each.
    const byName = (steps: Step[], name: string) => steps.find((s) => s.name === name)!.cost;
    expect(byName(routesYear, "POST /points/charge")).toMatchObject({ calls: 1, writeTx: 1 });
    expect(byName(routesYear, "POST /points/use")).toMatchObject({ calls: 1, writeTx: 1 });
    expect(byName(routesYear, "GET /points")).toEqual({ calls: 1, rowsRead: 1, rowsWritten: 0, writeTx: 0 });
    // A page of history reads the page (+1 to know there is more) and the user, not the user's past.
    expect(byName(routesYear, "GET /points/history").rowsRead).toBeLessThanOrEqual(25);
  });

  it("today's ranking (D1 fallback) reads today's sold lines, not the lines of earlier days", async () => {
    const { productId } = (await fixtures(1))[0]!;
    const bookmark = {
      [BOOKMARK_HEADER]:
        (await api.post("/api/v1/points/charge", { userId: (await fixtures(1))[0]!.userId, amount: 1 })).headers.get(BOOKMARK_HEADER) ?? "",
    };
    const before = costOf("top", await api.get("/api/v1/products/top?size=11", bookmark)).cost;
    await writeHistory({ orders: 3_000, pointHistory: 0, userCoupons: 0, events: 0 }, productId);
    const after = costOf("top", await api.get("/api/v1/products/top?size=12", bookmark)).cost;
    expect(after.rowsRead).toBeLessThanOrEqual(before.rowsRead + SLACK);
  });

  it("names rows read and written on every D1-touching answer", async () => {
    const userId = await createUser(0);
    const res = await api.post("/api/v1/points/charge", { userId, amount: 500 });
    expect(res.headers.get("server-timing")).toMatch(/d1;desc="1 call, \d+ rows read, [1-9]\d* written, 1 write tx";dur=/);
  });
});
