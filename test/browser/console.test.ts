import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, startWranglerDev, type DevServer } from "./wrangler-dev";

/**
 * The operator console and the docs UI in a real browser: Debian's Chromium driven by
 * playwright-core against `wrangler dev` (started here on free ports, fresh local state).
 * Every request the pages make must stay on this machine: any other host is aborted and
 * recorded, and the run fails if there was one. Screenshots go to docs/ (committed).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "browser-admin-token";
const DOCS = resolve(import.meta.dirname, "../../docs");
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost"]);

let server: DevServer;
let platform: Awaited<ReturnType<typeof startPlatform>>;
let browser: Browser;
let context: BrowserContext;
/** The signed-in console, kept across tests so the last screenshot shows the coupon, the product and the dead letter. */
let page: Page;
const offHost: string[] = [];
const cspViolations: string[] = [];

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${server.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** Polls `read` until it returns true (bounded): the console refreshes every 1.5 s, so 10 s is six chances. */
async function until(what: string, read: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await read())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const field = (page: Page, card: string, name: string) => page.locator(`${card} [data-field="${name}"]`).textContent();

/**
 * The console's numbers for a coupon equal the API's, read after the API changed: fails on a
 * console that stopped refreshing or shows stale counts.
 */
async function expectCouponShown(page: Page, couponId: number, issued: number): Promise<void> {
  const card = `[data-coupon-id="${couponId}"]`;
  const view = (await api("GET", `/api/v1/admin/coupons/${couponId}/shards`)).body.data;
  expect(view.issued).toBe(issued);
  await until(`console shows coupon ${couponId} issued=${issued}`, async () => (await field(page, card, "issued")) === String(issued));
  expect(await field(page, card, "quantity")).toBe(String(view.quantity));
  expect(await field(page, card, "remaining")).toBe(String(view.quantity - view.issued));
  const perShard = await page.locator(`${card} tbody tr`).evaluateAll((rows) => rows.map((r) => Number(r.children[2]!.textContent)));
  expect(perShard).toEqual(view.perShard.map((s: { issued: number }) => s.issued));
}

/** The coupon's chart counts `issued` wins since its window opened, as the server's series does. */
async function expectChart(page: Page, couponId: number, issued: number): Promise<void> {
  const series = (await api("GET", `/api/v1/admin/coupons/${couponId}/issuances`)).body.data;
  expect(series.issued).toBe(issued);
  const chart = page.locator(`[data-coupon-id="${couponId}"] svg.spark`);
  await until(
    `chart of coupon ${couponId} counts ${issued}`,
    async () => (await chart.count()) === 1 && (await chart.getAttribute("data-total")) === String(issued),
  );
  expect(Number(await chart.getAttribute("data-peak"))).toBeGreaterThan(0);
  expect(Number(await chart.getAttribute("data-samples"))).toBeGreaterThan(1);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium (.ci/run installs it)`);
  platform = await startPlatform();
  server = await startWranglerDev({
    ADMIN_TOKEN: TOKEN,
    DATA_PLATFORM_URL: platform.url,
    EVENT_RETRY_BASE_SECONDS: "0",
    RATE_LIMIT_WRITES_PER_MINUTE: "0",
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (LOCAL_HOSTS.has(url.hostname)) return route.continue();
    offHost.push(url.href);
    return route.abort();
  });
  context.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await platform?.close();
});

describe("operator console in Chromium", () => {
  it("refuses a wrong token with the API's own 403 and loads nothing else", async () => {
    const page = await context.newPage();
    const apiCalls: string[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname.startsWith("/api/")) apiCalls.push(`${r.method()} ${new URL(r.url()).pathname}`);
    });
    await page.goto(`${server.url}/admin/console`);
    await page.fill("#token", "not-the-token");
    await page.click('#login button[type="submit"]');
    await page.locator("#auth-error").waitFor({ state: "visible" });
    const refused = await api("GET", "/api/v1/admin/stats", undefined, "not-the-token");
    expect(refused.status).toBe(403);
    expect(await page.locator("#auth-error").textContent()).toBe(`Refused: 403 ${refused.body.error}: ${refused.body.detail}`);
    expect(await page.locator("#console").isHidden()).toBe(true);
    await page.waitForTimeout(2_000); // two poll periods: nothing may start polling after a refusal
    expect(apiCalls).toEqual(["GET /api/v1/admin/stats"]);
    expect(await page.evaluate(() => sessionStorage.getItem("console.adminToken"))).toBeNull();
    await page.screenshot({ path: join(DOCS, "console-refused.png") });
    await page.close();
  });

  it("creates a coupon through its form, follows issuances and shows the API's refusal detail", async () => {
    page = await context.newPage();
    await page.goto(`${server.url}/admin/console`);
    await page.fill("#token", TOKEN);
    await page.click('#login button[type="submit"]');
    await page.locator("body[data-signed-in]").waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("console.adminToken"))).toBe(TOKEN);

    await page.fill('#create-coupon [name="quantity"]', "50");
    await page.fill('#create-coupon [name="shards"]', "2");
    await page.click('#create-coupon button[type="submit"]');
    const created = await page.locator("#create-coupon .result.ok").textContent();
    const couponId = Number(/#(\d+)/.exec(created ?? "")?.[1]);
    expect(couponId).toBeGreaterThan(0);
    await page.locator(`[data-coupon-id="${couponId}"] [data-field="issued"]`).waitFor();
    await expectCouponShown(page, couponId, 0);

    // A refusal is shown in the API's own words: the coupon's window is open, so K cannot be raised.
    await page.fill('#coupon-shards [name="couponId"]', String(couponId));
    await page.fill('#coupon-shards [name="shards"]', "4");
    await page.click('#coupon-shards button[type="submit"]');
    const refusal = await api("PUT", `/api/v1/admin/coupons/${couponId}/shards`, { shards: 4 });
    expect(refusal.status).toBe(409);
    await until("refusal shown", async () => (await page.locator("#coupon-shards .result").textContent()) !== "…");
    expect(await page.locator("#coupon-shards .result.error").textContent()).toBe(`409 ${refusal.body.error}: ${refusal.body.detail}`);

    // Issue through the API; the console must catch up, twice (a frozen page fails the second).
    const users: number[] = [];
    for (let i = 0; i < 10; i++) users.push((await api("POST", "/api/v1/admin/users", { name: `u${i}` })).body.data.userId);
    for (const userId of users.slice(0, 7)) expect((await api("POST", `/api/v1/coupons/${couponId}/issue`, { userId })).status).toBe(201);
    await expectCouponShown(page, couponId, 7);
    await expectChart(page, couponId, 7);
    for (const userId of users.slice(7)) expect((await api("POST", `/api/v1/coupons/${couponId}/issue`, { userId })).status).toBe(201);
    await expectCouponShown(page, couponId, 10);
    await expectChart(page, couponId, 10);

    // The chart is the server's series since the window opened, not what this page happened to watch:
    // a page opened now draws all ten wins at once.
    const fresh = await context.newPage();
    await fresh.goto(`${server.url}/admin/console`);
    await fresh.fill("#token", TOKEN); // the token is kept per tab: a new tab signs in again
    await fresh.click('#login button[type="submit"]');
    await fresh.locator("body[data-signed-in]").waitFor();
    await expectChart(fresh, couponId, 10);
    await fresh.close();
  });

  it("shows a real dead letter (failed deliveries of a paid order) and replays it", async () => {
    // A paid order's order.completed goes outbox -> queue -> the platform, which refuses it until
    // the queue's retries run out and the DLQ consumer stores the dead letter.
    await page.fill('#create-product [name="stock"]', "20");
    await page.fill('#create-product [name="stockShards"]', "2");
    await page.click('#create-product button[type="submit"]');
    const productId = Number(/#(\d+)/.exec((await page.locator("#create-product .result.ok").textContent()) ?? "")?.[1]);
    const card = `[data-product-id="${productId}"]`;
    // The console's first sample of the product precedes the order, so its last-minute counts see the order.
    await until(
      "console shows the new product",
      async () => (await page.locator(`${card} [data-field="available"]`).count()) === 1 && (await field(page, card, "available")) === "20",
    );
    const userId = (await api("POST", "/api/v1/admin/users", { name: "buyer", initialBalance: 1_000_000 })).body.data.userId;
    const order = await api("POST", "/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 3 }] });
    expect(order.status, JSON.stringify(order.body)).toBe(201);
    expect((await api("POST", "/api/v1/points/use", { userId, orderId: order.body.data.orderId })).status).toBe(200);

    await until(
      "console shows the product's sale",
      async () => (await field(page, card, "sold")) !== null && Number(await field(page, card, "available")) === 17,
    );
    const stock = (await api("GET", `/api/v1/admin/products/${productId}/stock-shards`)).body.data;
    expect(Number(await field(page, card, "available"))).toBe(stock.total.available);
    expect(
      Number(await field(page, card, "reserved")) + Number(await field(page, card, "confirmed")) + Number(await field(page, card, "sold")),
    ).toBe(3);

    await until(
      "a dead letter is stored",
      async () => (await api("GET", "/api/v1/admin/stats")).body.data.deadLettersWaiting === 1,
      90_000,
    );
    const letter = (await api("GET", "/api/v1/admin/dead-letters?limit=100")).body.data;
    const letters = letter.deadLetters ?? letter.items;
    expect(letters).toHaveLength(1);
    const { id, eventId } = letters[0];
    const row = page.locator(`[data-dead-letter-id="${id}"]`);
    await row.waitFor();
    await until("console shows 1 waiting", async () => (await page.locator('[data-field="deadLettersWaiting"]').textContent()) === "1");
    await page.screenshot({ path: join(DOCS, "console.png"), fullPage: true });

    platform.accept = true;
    await row.locator("button[data-replay]").click();
    await until("replay acknowledged", async () =>
      /sent to the events queue again/.test((await page.locator("#replay-result").textContent()) ?? ""),
    );
    await until("console shows 0 waiting", async () => (await page.locator('[data-field="deadLettersWaiting"]').textContent()) === "0");
    expect((await api("GET", "/api/v1/admin/stats")).body.data.deadLettersWaiting).toBe(0);
    expect(await row.locator('[data-field="replayedAt"]').textContent()).not.toBe("—");
    // The replayed event really reached the platform this time.
    await until(
      "platform received the replay",
      async () => platform.received.some((r) => r.eventId === eventId && r.status === 200),
      30_000,
    );
    expect(await field(page, card, "ordersPerMinute")).toBe(
      String(stock.shards.reduce((n: number, s: { requests: number }) => n + s.requests, 0)),
    );
    await page.close();
  });

  it("opens /docs offline: Swagger UI lists every operation of /openapi.json", async () => {
    const page = await context.newPage();
    const hosts = new Set<string>();
    page.on("request", (r) => hosts.add(new URL(r.url()).host));
    await page.goto(`${server.url}/docs`);
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const operations = Object.values<Record<string, unknown>>(doc.paths).reduce((n, methods) => n + Object.keys(methods).length, 0);
    await until("operations rendered", async () => (await page.locator(".opblock").count()) === operations, 30_000);
    expect(await page.locator(".opblock-summary-path").first().textContent()).toMatch(/^\/api\/v1\//);
    expect([...hosts]).toEqual([new URL(server.url).host]);
    await page.close();
  });

  it("made no request off this machine and broke no Content-Security-Policy (all pages above)", () => {
    expect(offHost, "requests to hosts other than this machine").toEqual([]);
    expect(cspViolations, "Content-Security-Policy violations").toEqual([]);
  });
});

mkdirSync(DOCS, { recursive: true });
