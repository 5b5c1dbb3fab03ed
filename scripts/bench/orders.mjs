#!/usr/bin/env node
/**
 * `npm run bench:orders`: hot-product order storm, then payment, then stock conservation.
 *
 * Setup: 5 products (stock 2,000 each) through the admin API; users with a 1,000,000 balance
 * seeded straight into D1. Phase 1: concurrent `POST /api/v1/orders` with 1..3 distinct hot
 * products x quantity 1..3 each (a seeded, reproducible mix whose demand exceeds the stock,
 * so later orders get 409 INSUFFICIENT_STOCK). Phase 2: every other created order is paid
 * with `POST /api/v1/points/use {userId, orderId}`. Both phases print throughput/latency beside
 * the same-run `/health` ceiling (targets: placement 0.2 of it, payments 0.25), and both
 * storms are checked against the latency targets (p99 <= 5 x p50, max < 5,000 ms).
 * Then, per product (DESIGN §3 "Stock conservation"):
 *
 *   initial stock == products.stock (GET /products/{id}, a projection polled until stable)
 *                    + quantity in NOT_PAID orders + quantity in PAID orders
 *
 * with orders read back through `GET /orders/{orderId}?userId=` (status, items[].quantity),
 * plus: every created order reads back with the lines it was placed with; PAID orders ==
 * payments answered 200; balances dropped by exactly the paid amounts; D1 agrees with the API.
 *
 * `npm run bench:orders:sharded` (`--shards K`, 1..32; issue 13): the placement + payment storm
 * twice on the same server, first on hot product(s) with K = 1, then on fresh products created
 * with `stockShards: K`, each with fresh users (same sizes) and its own warm-up product of the
 * same K. The defaults change to make the point of a sharded hot product: ONE hot product
 * (`--products 1`) of 5,000 units (`--stock 5000`) and the same 3,000 orders, each one line of
 * quantity 1..3, so demand (~6,000) exceeds the stock and every shard ends up borrowing from its
 * siblings and, once all are empty, proving "none left" (409 INSUFFICIENT_STOCK). Both storms pass
 * every check above (conservation is per product, summed over its shards); each also checks the
 * admin view `GET /admin/products/{id}/stock-shards`, polled until every shard has openTransfers
 * = 0 and projected = available and two reads agree: sum of available + held + confirmed + sold
 * over the shards == initial stock; products.stock == sum of the projected rows == sum of
 * available; every line sits on shard order_id % K; and on every shard sold == the PAID lines and
 * held + confirmed == the NOT_PAID lines whose `order_items.stock_shard` is that shard (read from
 * D1). Prints a per-shard table (reserve calls that reached the shard during the storm, its share
 * against a uniform 1/K, its units, the D1 projection batches it sent), K = 1 and K side by side,
 * the hop histograms, and `ratio orders.place.k1=..` / `orders.place.k<K>`, `orders.pay.k1` /
 * `orders.pay.k<K>` lines. Locally every object runs in one workerd process on this machine's
 * cores, so K shards cannot show more than one object's worth of capacity here: the local run is
 * about exactness and the per-shard spread, not capacity.
 *
 * Options: --orders 3000 --users 1000 --connections 300 --products 5 --stock 2000 --seed 7 --warmup 300
 *          --shards K (then the defaults are --products 1 --stock 5000)
 * (3,000 orders average about 4 units each: demand ~12,000 > 10,000 in stock.)
 */
import { startServer } from "./server.mjs";
import {
  Checks,
  adminHeaders,
  api,
  arg,
  healthCeiling,
  latencyChecks,
  load,
  printLoad,
  printMachine,
  d1Groups,
  printD1After,
  printD1Writes,
  printRatio,
  printTable,
  readStable,
  rng,
  routeExists,
  seedUsersD1,
  statusSummary,
  compareShards,
  fmt,
  fmtInt,
  headerValue,
  parseServerTiming,
} from "./lib.mjs";

const ORDERS = arg("orders", 3000);
const USERS = arg("users", 1000);
const CONNECTIONS = arg("connections", 300);
/** Orders placed and paid on a separate product by separate users before the storms (not measured); 0 skips. */
const WARMUP = arg("warmup", 300);
/** `--shards K`: run the storms on K = 1, then on K stock shards (undefined: the single run of before). */
const SHARDS = process.argv.slice(2).some((a) => a === "--shards" || a.startsWith("--shards=")) ? arg("shards", 0) : undefined;
const SHARDED = SHARDS !== undefined;
/** Same bound as the admin API (src/shared/sharded-quantity.ts MAX_SHARDS). */
const MAX_SHARDS = 32;
// A sharded hot product makes its point with ONE hot product whose demand exceeds its stock.
const PRODUCTS = arg("products", SHARDED ? 1 : 5);
const STOCK = arg("stock", SHARDED ? 5000 : 2000);
const SEED = arg("seed", 7);
const BALANCE = 1_000_000;
/** Ratio targets against the same-run /health ceiling. */
const PLACE_TARGET = 0.2;
const PAY_TARGET = 0.25;

if (SHARDED && !(Number.isInteger(SHARDS) && SHARDS >= 1 && SHARDS <= MAX_SHARDS)) {
  console.error(`--shards needs an integer 1..${MAX_SHARDS} (got ${process.argv.slice(2).join(" ")})`);
  process.exit(1);
}


const server = await startServer();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  if (!SHARDED) {
    console.log(`\n## bench:orders  orders=${ORDERS} users=${USERS} products=${PRODUCTS}x${STOCK} connections=${CONNECTIONS} seed=${SEED}`);
    const r = await runStorm({});
    exitCode = r.skipped ? 2 : r.ok ? 0 : 1;
  } else {
    console.log(
      `\n## bench:orders --shards ${SHARDS}  orders=${ORDERS} users=${USERS} products=${PRODUCTS}x${STOCK} connections=${CONNECTIONS} seed=${SEED}, twice on one server: K=1, then K=${SHARDS} (fresh products, fresh users)`,
    );
    exitCode = await compareShards(SHARDS, "stock shards", { runStorm, printComparison, point: "The point of the local run is exactness (conservation over the shards, lines on their shard) and the per-shard spread." });
  }
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);

/**
 * One run: fresh products (with `k` stock shards when given) and users, warm-up, the placement
 * storm, the payment storm, read-back and the checks. Without `k` it is the single run of
 * `npm run bench:orders` and prints exactly what that always printed.
 */
async function runStorm({ k }) {
  const sharded = k !== undefined;
  const tagged = (s) => (sharded ? `${s}, K=${k}` : s);
  // Setup: hot products via the admin API, users with balance via D1.
  const productIds = [];
  const prices = new Map();
  const setup = await load({
    url: server.url,
    path: "/api/v1/admin/products",
    method: "POST",
    headers: adminHeaders(),
    connections: 1, // ids in creation order
    amount: PRODUCTS,
    parseBodies: true,
    build: (i, ctx) => {
      ctx.price = 1000 * (i + 1);
      return { body: { name: `bench-hot-${i}`, price: ctx.price, stock: STOCK, ...(sharded ? { stockShards: k } : {}) } };
    },
    onResponse: (status, json, ctx) => {
      if (status === 201) {
        productIds.push(json.data.productId);
        prices.set(json.data.productId, ctx.price);
      }
    },
    label: tagged(`POST /admin/products (setup, ${PRODUCTS}`) + ")",
  });
  if (productIds.length !== PRODUCTS) throw new Error(`product setup: ${JSON.stringify(setup.statusCounts)} ${JSON.stringify(setup.errorCodes)}`);
  const users = await seedUsersD1(server.d1, USERS, { initialBalance: BALANCE });
  console.log(`\nsetup: ${PRODUCTS} products${sharded ? ` (${productIds.join(", ")}; stockShards ${k})` : ""}, ${users.length} users seeded into D1 with balance ${BALANCE}`);

  const missing = [];
  for (const p of ["/api/v1/orders", "/api/v1/points/use"]) if (!(await routeExists(server.url, p))) missing.push(p);
  if (missing.length) {
    console.log(`\nSKIPPED: ${missing.map((p) => `POST ${p}`).join(", ")} not in this build (404 NOT_FOUND). Setup worked.`);
    return { skipped: true };
  } else {
    if (sharded && !(await stockShardsView(productIds[0]))) {
      console.log(`\nSKIPPED: GET /api/v1/admin/products/{productId}/stock-shards is not in this build. Setup worked.`);
      return { skipped: true };
    }
    // The order mix, fixed by the seed: 1..3 distinct products, quantity 1..3 each.
    const random = rng(SEED);
    const plan = Array.from({ length: ORDERS }, (_, i) => {
      const shuffled = [...productIds].sort(() => random() - 0.5);
      const lines = shuffled.slice(0, 1 + Math.floor(random() * Math.min(3, PRODUCTS)));
      return {
        userId: users[i % users.length],
        orderProducts: lines.map((productId) => ({ productId, quantity: 1 + Math.floor(random() * 3) })),
      };
    });
    const demand = plan.reduce((s, o) => s + o.orderProducts.reduce((t, l) => t + l.quantity, 0), 0);
    console.log(`planned demand ${demand} units vs ${PRODUCTS * STOCK} in stock`);

    // Warm-up (not measured, separate product and users): the storms meet a warm isolate, JIT and
    // D1 statement cache, as production traffic does; the /health ceilings are measured warm too.
    if (WARMUP > 0) {
      const warmProduct = await fetch(new URL("/api/v1/admin/products", server.url), {
        method: "POST",
        headers: { "content-type": "application/json", ...adminHeaders() },
        // With --shards the warm-up product has the storm's K, so the K-shard storm meets warm stock objects' code paths too.
        body: JSON.stringify({ name: "bench-warm-up", price: 100, stock: WARMUP * 10, ...(sharded ? { stockShards: k } : {}) }),
      }).then((r) => r.json());
      const warmUsers = await seedUsersD1(server.d1, WARMUP, { initialBalance: BALANCE, namePrefix: "bench-warm" });
      const warmOrders = [];
      await load({
        url: server.url,
        path: "/api/v1/orders",
        method: "POST",
        connections: CONNECTIONS,
        amount: WARMUP,
        parseBodies: true,
        build: (i, ctx) => {
          ctx.userId = warmUsers[i];
          return { body: { userId: warmUsers[i], orderProducts: [{ productId: warmProduct.data.productId, quantity: 1 }] } };
        },
        onResponse: (status, json, ctx) => {
          if (status === 201) warmOrders.push({ userId: ctx.userId, orderId: json.data.orderId });
        },
        label: "warm-up orders",
      });
      await load({
        url: server.url,
        path: "/api/v1/points/use",
        method: "POST",
        connections: CONNECTIONS,
        amount: warmOrders.length,
        build: (i) => ({ body: warmOrders[i] }),
        label: "warm-up payments",
      });
      await healthCeiling(server.url, { connections: CONNECTIONS, amount: 2_000, label: "warm-up /health" });
      console.log(`warm-up: ${warmOrders.length} orders placed and paid on product ${warmProduct.data.productId}${sharded ? ` (K=${k})` : ""} by separate users, 2,000 x /health`);
    }

    // Each shard's reserve calls and D1 batches before the storm (the counters live in the objects' memory).
    const viewsBefore = sharded ? await Promise.all(productIds.map((id) => stockShardsView(id))) : undefined;

    // Phase 1: place.
    const created = []; // {orderId, userId, lines, totalAmount, expectedTotal}
    const answeredPlace = new Uint8Array(ORDERS);
    const placeStatus = new Uint16Array(ORDERS);
    const groupsBeforePlace = await d1Groups(server.url);
    /** Every placement answer in arrival order, with its sequential hops (the sell-out's distribution below). */
    const placeArrivals = [];
    const place = await load({
      url: server.url,
      path: "/api/v1/orders",
      method: "POST",
      connections: CONNECTIONS,
      amount: ORDERS,
      maxSeconds: 100,
      timeout: 60,
      parseBodies: true,
      build: (i, ctx) => {
        ctx.i = i;
        return { body: plan[i] };
      },
      onResponse: (status, json, ctx, headers) => {
        answeredPlace[ctx.i] = 1;
        placeStatus[ctx.i] = status;
        placeArrivals.push({ status, hops: parseServerTiming(headerValue(headers, "server-timing"))?.hops?.count ?? 0 });
        if (status !== 201) return;
        const p = plan[ctx.i];
        created.push({
          orderId: json.data.orderId,
          userId: p.userId,
          lines: p.orderProducts,
          totalAmount: json.data.totalAmount,
          expectedTotal: p.orderProducts.reduce((s, l) => s + prices.get(l.productId) * l.quantity, 0),
        });
      },
      label: tagged(`POST /orders (storm, ${ORDERS}`) + ")",
    });
    printSelloutHops(placeArrivals, sharded ? k : 1);
    // Read at once: payments do not reserve, but an eviction would restart the counters.
    const viewsAfterPlace = sharded ? await Promise.all(productIds.map((id) => stockShardsView(id))) : undefined;
    const healthPlace = await healthCeiling(server.url, {
      connections: CONNECTIONS,
      amount: ORDERS,
      label: sharded ? `GET /health (ceiling, after the K=${k} order storm)` : "GET /health (ceiling, same shape as the order storm)",
    });
    // After the ceiling run, the storm's after-answer writes (ctx.waitUntil) have landed.
    const groupsAfterPlace = await d1Groups(server.url);

    // Phase 2: pay every other created order.
    const toPay = created.filter((_, i) => i % 2 === 0);
    const paid = new Map(); // orderId -> paidAmount
    const answeredPay = new Uint8Array(toPay.length);
    let pay;
    let healthPay;
    let viewsAfterPay = viewsAfterPlace;
    let groupsAfterPay;
    if (toPay.length > 0) {
      pay = await load({
        url: server.url,
        path: "/api/v1/points/use",
        method: "POST",
        connections: Math.min(CONNECTIONS, toPay.length),
        amount: toPay.length,
        maxSeconds: 100,
        timeout: 60,
        parseBodies: true,
        build: (i, ctx) => {
          ctx.i = i;
          return { body: { userId: toPay[i].userId, orderId: toPay[i].orderId } };
        },
        onResponse: (status, json, ctx) => {
          answeredPay[ctx.i] = 1;
          if (status === 200) paid.set(toPay[ctx.i].orderId, json.data.paidAmount);
        },
        label: tagged(`POST /points/use (pay ${toPay.length}`) + ")",
      });
      if (sharded) viewsAfterPay = await Promise.all(productIds.map((id) => stockShardsView(id)));
      healthPay = await healthCeiling(server.url, {
        connections: Math.min(CONNECTIONS, toPay.length),
        amount: toPay.length,
        label: sharded ? `GET /health (ceiling, after the K=${k} payments)` : "GET /health (ceiling, same shape as payments)",
      });
      groupsAfterPay = await d1Groups(server.url);
    }
    printTable(sharded ? `Throughput and latency (K=${k}, same run)` : "Throughput and latency (same run)", [setup, place, healthPlace, ...(pay ? [pay, healthPay] : [])]);
    if (!sharded) {
      printRatio(place, healthPlace, { target: PLACE_TARGET, name: "orders.place" });
      printD1Writes(place, "orders.place");
      printD1After("orders.place", groupsBeforePlace, groupsAfterPlace, place.responses);
      if (pay) printRatio(pay, healthPay, { target: PAY_TARGET, name: "orders.pay" });
      if (pay) printD1Writes(pay, "orders.pay");
      if (pay) printD1After("orders.pay", groupsAfterPlace, groupsAfterPay, pay.responses);
      printLoad();
    }

    // Read back: products (projection, polled until stable) and every created order.
    const readStocks = async () => {
      const out = {};
      for (const id of productIds) {
        const r = await fetch(new URL(`/api/v1/products/${id}`, server.url), { signal: AbortSignal.timeout(10_000) });
        out[id] = (await r.json())?.data?.stock;
      }
      return out;
    };
    const { value: stocks, stable } = await readStable(readStocks, { interval: 500, tries: 20 });
    const orders = new Map(); // orderId -> {status, items}
    const readBack = await load({
      url: server.url,
      path: "/api/v1/orders/0",
      connections: 50,
      amount: created.length,
      maxSeconds: 100,
      timeout: 60,
      parseBodies: true,
      build: (i, ctx) => {
        ctx.o = created[i];
        return { path: `/api/v1/orders/${created[i].orderId}?userId=${created[i].userId}` };
      },
      onResponse: (status, json, ctx) => {
        if (status === 200) orders.set(ctx.o.orderId, json.data);
      },
      label: tagged(`GET /orders/{id}?userId= (read back ${created.length}`) + ")",
    });
    printTable("Read-back", [readBack]);

    const c = new Checks(sharded ? `Stock conservation, payment exactness and latency targets (K=${k}, product(s) ${productIds.join(", ")})` : "Stock conservation, payment exactness and latency targets");
    const unansweredPlace = ORDERS - answeredPlace.reduce((s, x) => s + x, 0);
    const unansweredPay = toPay.length - answeredPay.reduce((s, x) => s + x, 0);
    c.check(
      "every request answered (no socket errors, no timeouts)",
      unansweredPlace === 0 && unansweredPay === 0,
      unansweredPlace || unansweredPay ? `${unansweredPlace} orders and ${unansweredPay} payments unanswered: their outcome is unknown, conservation below still must hold` : "",
    );
    const placeOther = Object.keys(place.errorCodes).filter((k) => k !== "409 INSUFFICIENT_STOCK");
    c.check("order storm answers only 201 or 409 INSUFFICIENT_STOCK", placeOther.length === 0, JSON.stringify(place.errorCodes));
    if (sharded && placeOther.length > 0) await attributeRefusals({ k, productIds, plan, placeStatus });
    c.check("some orders hit 409 INSUFFICIENT_STOCK (demand exceeds stock)", (place.errorCodes["409 INSUFFICIENT_STOCK"] ?? 0) > 0, `${place.errorCodes["409 INSUFFICIENT_STOCK"] ?? 0}`);
    const badTotals = created.filter((o) => o.totalAmount !== o.expectedTotal);
    c.check("201 totals == sum(price x quantity)", badTotals.length === 0, `${badTotals.length} differ`);
    c.check("products.stock projection stable", stable, JSON.stringify(stocks));
    c.check("every created order reads back", orders.size === created.length, `${orders.size}/${created.length}`);

    const qty = (status) => {
      const m = new Map(productIds.map((id) => [id, 0]));
      for (const o of orders.values()) if (o.status === status) for (const it of o.items) m.set(it.productId, (m.get(it.productId) ?? 0) + it.quantity);
      return m;
    };
    const notPaid = qty("NOT_PAID");
    const paidQty = qty("PAID");
    const statuses = {};
    for (const o of orders.values()) statuses[o.status] = (statuses[o.status] ?? 0) + 1;
    console.log(`\norder statuses read back: ${JSON.stringify(statuses)}`);
    console.log("\n| product | initial | stock (API) | NOT_PAID qty | PAID qty | sum |\n|---:|---:|---:|---:|---:|---:|");
    let conserved = true;
    for (const id of productIds) {
      const sum = stocks[id] + notPaid.get(id) + paidQty.get(id);
      if (sum !== STOCK) conserved = false;
      console.log(`| ${id} | ${STOCK} | ${stocks[id]} | ${notPaid.get(id)} | ${paidQty.get(id)} | ${sum} |`);
    }
    c.check("conservation: initial == stock + NOT_PAID qty + PAID qty, for every product", conserved);

    const lineMismatch = created.filter((o) => {
      const got = orders.get(o.orderId);
      if (!got) return false;
      const want = new Map(o.lines.map((l) => [l.productId, l.quantity]));
      return got.items.length !== want.size || got.items.some((it) => want.get(it.productId) !== it.quantity);
    });
    c.check("every order's items are the lines it was placed with", lineMismatch.length === 0, `${lineMismatch.length} differ`);
    const paidRead = [...orders.values()].filter((o) => o.status === "PAID").length;
    c.check("PAID orders == payments answered 200", unansweredPay > 0 ? paidRead >= paid.size : paidRead === paid.size, `${paidRead} vs ${paid.size}`);
    c.check("payments answered 200 for every order paid once", paid.size === toPay.length - unansweredPay, `${paid.size}/${toPay.length} ${JSON.stringify(pay?.errorCodes ?? {})}`);
    const wrongPaid = [...paid].filter(([id, amount]) => amount !== created.find((o) => o.orderId === id)?.totalAmount);
    c.check("paidAmount == the order's totalAmount", wrongPaid.length === 0, `${wrongPaid.length} differ`);

    // D1 view (the source of truth for balances and orders).
    const paidSum = [...paid.values()].reduce((s, x) => s + x, 0);
    // Only the storm's users (the warm-up's users were seeded after them and paid too).
    const [minUser, maxUser] = [Math.min(...users), Math.max(...users)];
    const { total } = await server.d1.first(`SELECT COALESCE(SUM(balance), 0) AS total FROM user_balances WHERE user_id BETWEEN ${minUser} AND ${maxUser}`);
    c.check("sum of balances == initial - sum of paid amounts", unansweredPay > 0 || total === USERS * BALANCE - paidSum, `${total} vs ${USERS * BALANCE} - ${paidSum}`);
    const { n: useRows } = await server.d1.first(`SELECT COUNT(*) AS n FROM point_history WHERE type = 'USE' AND user_id BETWEEN ${minUser} AND ${maxUser}`);
    c.check("USE history rows == payments answered 200", unansweredPay > 0 || useRows === paid.size, `${useRows} vs ${paid.size}`);
    const d1Rows = await server.d1.all(
      `SELECT oi.product_id AS productId, o.status AS status, SUM(oi.quantity) AS q
       FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.product_id IN (${productIds.join(",")}) GROUP BY oi.product_id, o.status`,
    );
    const d1Mismatch = d1Rows.filter((r) => {
      const api = r.status === "NOT_PAID" ? notPaid.get(r.productId) : r.status === "PAID" ? paidQty.get(r.productId) : undefined;
      return api !== undefined && api !== r.q;
    });
    const d1Conserved = productIds.every((id) => {
      const q = (st) => d1Rows.find((r) => r.productId === id && r.status === st)?.q ?? 0;
      return stocks[id] + q("NOT_PAID") + q("PAID") === STOCK;
    });
    c.check("conservation with every order D1 holds (also those whose answer was lost)", d1Conserved);
    const d1Statuses = await server.d1.all("SELECT status, COUNT(*) AS n FROM orders GROUP BY status");
    c.check("D1 order_items per product/status == the API read-back", d1Mismatch.length === 0, `D1 orders by status: ${JSON.stringify(Object.fromEntries(d1Statuses.map((r) => [r.status, r.n])))}`);
    const d1Stock = await server.d1.all(`SELECT id, stock FROM products WHERE id IN (${productIds.join(",")})`);
    c.check("D1 products.stock == the API's stock", d1Stock.every((r) => r.stock === stocks[r.id]), JSON.stringify(Object.fromEntries(d1Stock.map((r) => [r.id, r.stock]))));
    let shardSummaries;
    if (sharded) {
      shardSummaries = [];
      for (const [i, id] of productIds.entries()) {
        shardSummaries.push(
          await shardChecks(c, { k, productId: id, before: viewsBefore[i], afterPlace: viewsAfterPlace[i], afterPay: viewsAfterPay[i], apiStock: stocks[id] }),
        );
      }
    }
    latencyChecks(c, place, { ceiling: healthPlace });
    if (pay) latencyChecks(c, pay, { ceiling: healthPay });
    else c.check("payment storm ran (some orders were created)", false, "no order was created, so nothing was paid");
    c.print();
    return { ok: c.ok(), k, productIds, place, healthPlace, pay, healthPay, shardSummaries, checksFailed: c.failed, created: created.length, paid: paid.size };
  }
}

/** `GET /admin/products/{id}/stock-shards` data, or undefined when the route is not in the build. */
async function stockShardsView(productId) {
  const r = await api(server.url, "GET", `/api/v1/admin/products/${productId}/stock-shards`, undefined, { admin: true });
  if (r.status === 404 && r.json?.error === "NOT_FOUND") return undefined;
  if (r.status !== 200) throw new Error(`stock-shards view of product ${productId}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.json.data;
}

/**
 * Which shard answered the storm's other refusals (a 503 is SHARDS_BUSY when its hops show the
 * borrowing rounds): the answer carries no order id, but the order's FAILED row in D1 carries its
 * line's stock_shard. Attributed through the users all of whose failed orders got that status
 * (so their FAILED rows can only be those); the rest is reported as unattributed.
 */
async function attributeRefusals({ k, productIds, plan, placeStatus }) {
  const failedByUser = new Map(); // userId -> [{status, key}] of its non-201 answers (key: its lines' quantities)
  const keyOf = (lines) => lines.map((l) => `${l.productId}x${l.quantity}`).sort().join(",");
  plan.forEach((o, i) => {
    if (placeStatus[i] && placeStatus[i] !== 201) failedByUser.set(o.userId, [...(failedByUser.get(o.userId) ?? []), { status: placeStatus[i], key: keyOf(o.orderProducts) }]);
  });
  const rows = await server.d1.all(
    `SELECT o.id AS orderId, o.user_id AS userId, oi.product_id AS productId, oi.quantity AS quantity, oi.stock_shard AS shard
     FROM orders o JOIN order_items oi ON oi.order_id = o.id
     WHERE o.status = 'FAILED' AND oi.product_id IN (${productIds.join(",")}) AND o.user_id BETWEEN ? AND ?`,
    Math.min(...plan.map((o) => o.userId)),
    Math.max(...plan.map((o) => o.userId)),
  );
  const orders = new Map(); // orderId -> {userId, lines, shards}
  for (const r of rows) {
    const o = orders.get(r.orderId) ?? { userId: r.userId, lines: [], shards: new Set() };
    o.lines.push({ productId: r.productId, quantity: r.quantity });
    o.shards.add(r.shard);
    orders.set(r.orderId, o);
  }
  const byUser = new Map();
  for (const [orderId, o] of orders) byUser.set(o.userId, [...(byUser.get(o.userId) ?? []), { orderId, key: keyOf(o.lines), shards: o.shards }]);
  const byStatus = new Map(); // status -> {shards: count per shard, orders: [], unattributed}
  for (const [userId, answers] of failedByUser) {
    const mine = byUser.get(userId) ?? [];
    for (const ans of answers) {
      if (ans.status === 409) continue;
      const entry = byStatus.get(ans.status) ?? { shards: new Array(k).fill(0), orders: [], unattributed: 0 };
      byStatus.set(ans.status, entry);
      // The FAILED order is this answer's when the user has no other failed order of those same lines with another answer.
      const sameKey = answers.filter((x) => x.key === ans.key);
      const rowsSameKey = mine.filter((m) => m.key === ans.key);
      if (sameKey.every((x) => x.status === ans.status) && rowsSameKey.length === sameKey.length) {
        if (sameKey[0] !== ans) continue; // counted once per key below
        for (const m of rowsSameKey) {
          for (const sh of m.shards) entry.shards[sh]++;
          entry.orders.push(m.orderId);
        }
      } else entry.unattributed++;
    }
  }
  for (const [st, e] of byStatus) {
    console.log(
      `\n${st} answers of the K=${k} storm by the shard of their order's line (order_items.stock_shard of the FAILED order, matched by user and lines): ` +
        `${e.shards.map((n, sh) => `shard ${sh}: ${n}`).join(", ")}; unattributed ${e.unattributed}; orders ${e.orders.slice(0, 20).join(", ")}${e.orders.length > 20 ? ", ..." : ""}`,
    );
  }
}

/** Nothing in flight between shards and every shard's D1 row written. */
function settledView(v) {
  return v.shards.every((s) => s.openTransfers === 0 && s.projected === s.available);
}
function viewKey(v) {
  return JSON.stringify(v.shards.map((s) => [s.available, s.held, s.confirmed, s.sold, s.projected, s.openTransfers]));
}

/**
 * The admin stock-shards view after both storms (polled until every shard has openTransfers = 0
 * and projected = available, and two reads 500 ms apart agree), its checks against D1's order
 * lines, and the per-shard table: reserve calls that reached the shard during the placement
 * storm (its `requests` right after the storm minus before), its share against a uniform 1/K,
 * its units, and the D1 projection batches it sent during placement and during payment.
 */
async function shardChecks(c, { k, productId, before, afterPlace, afterPay, apiStock }) {
  const pollStarted = Date.now();
  let view = await stockShardsView(productId);
  let stable = false;
  for (let i = 0; i < 60; i++) {
    if (settledView(view)) {
      await new Promise((r) => setTimeout(r, 500));
      const again = await stockShardsView(productId);
      stable = viewKey(again) === viewKey(view);
      view = again;
      if (stable && settledView(view)) break;
    } else {
      await new Promise((r) => setTimeout(r, 250));
      view = await stockShardsView(productId);
    }
  }
  const pollMs = Date.now() - pollStarted;
  const per = [...view.shards].sort((a, b) => a.shard - b.shard);
  const d1 = server.d1;
  const lineRows = await d1.all(
    `SELECT oi.stock_shard AS shard, o.status AS status, SUM(oi.quantity) AS q, COUNT(*) AS n
     FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.product_id = ? GROUP BY oi.stock_shard, o.status`,
    productId,
  );
  const lines = (shard, status) => lineRows.filter((r) => r.shard === shard && r.status === status).reduce((a, r) => a + r.q, 0);
  const { n: misrouted } = await d1.first("SELECT COUNT(*) AS n FROM order_items WHERE product_id = ? AND stock_shard != order_id % ?", productId, k);
  const { n: lineCount } = await d1.first("SELECT COUNT(*) AS n FROM order_items WHERE product_id = ?", productId);
  const { stock: d1Stock } = await d1.first("SELECT stock FROM products WHERE id = ?", productId);
  const rowSum = await d1.first("SELECT COALESCE(SUM(available), 0) AS s, COUNT(*) AS n FROM product_stock_shards WHERE product_id = ?", productId);

  const byShard = (v) => new Map(v.shards.map((s) => [s.shard, s]));
  const b = byShard(before);
  const a = byShard(afterPlace);
  const p = byShard(afterPay);
  // Deltas between reads taken right before the storm, right after it and right after the payments:
  // the counters live in each object's memory, and the final read below may meet objects that were
  // evicted while idle during the read-back (their counters restart at 0).
  const reached = per.map((s) => (a.get(s.shard)?.requests ?? 0) - (b.get(s.shard)?.requests ?? 0));
  const batchesPlace = per.map((s) => (a.get(s.shard)?.d1Batches ?? 0) - (b.get(s.shard)?.d1Batches ?? 0));
  const batchesPay = per.map((s) => (p.get(s.shard)?.d1Batches ?? 0) - (a.get(s.shard)?.d1Batches ?? 0));
  // An object evicted between two of those reads restarts its counters at 0: a difference would go negative.
  const countsReset = per.filter((s, i) => reached[i] < 0 || batchesPlace[i] < 0 || batchesPay[i] < 0).map((s) => s.shard);
  const restartedLater = per.filter((s) => s.requests < (p.get(s.shard)?.requests ?? 0)).map((s) => s.shard);
  const reachedTotal = reached.reduce((x, y) => x + y, 0);
  const shares = reached.map((r) => (reachedTotal > 0 ? (r / reachedTotal) * k : NaN));
  const sum = (f) => per.reduce((n, s) => n + f(s), 0);
  const total = { available: sum((s) => s.available), held: sum((s) => s.held), confirmed: sum((s) => s.confirmed), sold: sum((s) => s.sold), projected: sum((s) => s.projected ?? 0) };
  const units = total.available + total.held + total.confirmed + total.sold;

  console.log(`\n### Stock shards of product ${productId} (K=${k}; admin view after both storms, settled after ${pollMs} ms of polling)\n`);
  console.log(
    "| shard | reserve requests reached | share of requests | share / uniform (1/K) | available | held | confirmed | sold | projected (D1) | NOT_PAID line qty | PAID line qty | open transfers | D1 batches (placement) | D1 batches (payments) |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  per.forEach((s, i) => {
    console.log(
      `| ${s.shard} | ${fmtInt(reached[i])} | ${fmt((reached[i] / reachedTotal) * 100)}% | ${fmt(shares[i], 2)} | ${fmtInt(s.available)} | ${fmtInt(s.held)} | ${fmtInt(s.confirmed)} | ${fmtInt(s.sold)} | ${s.projected === null ? "null" : fmtInt(s.projected)} | ${fmtInt(lines(s.shard, "NOT_PAID"))} | ${fmtInt(lines(s.shard, "PAID"))} | ${s.openTransfers} | ${fmtInt(batchesPlace[i])} | ${fmtInt(batchesPay[i])} |`,
    );
  });
  const bp = batchesPlace.reduce((x, y) => x + y, 0);
  const bq = batchesPay.reduce((x, y) => x + y, 0);
  console.log(
    `| all | ${fmtInt(reachedTotal)} | 100% | | ${fmtInt(total.available)} | ${fmtInt(total.held)} | ${fmtInt(total.confirmed)} | ${fmtInt(total.sold)} | ${fmtInt(total.projected)} | ${fmtInt(lineRows.filter((r) => r.status === "NOT_PAID").reduce((x, r) => x + r.q, 0))} | ${fmtInt(lineRows.filter((r) => r.status === "PAID").reduce((x, r) => x + r.q, 0))} | ${sum((s) => s.openTransfers)} | ${fmtInt(bp)} | ${fmtInt(bq)} |`,
  );
  console.log(
    `\norder lines of the product in D1: ${fmtInt(lineCount)} (${[...lineRows.reduce((m, r) => m.set(r.status, (m.get(r.status) ?? 0) + r.n), new Map())]
      .map(([st, n]) => `${st} ${fmtInt(n)}`)
      .join(", ")}); reserve calls that reached the shards during the storm: ${fmtInt(reachedTotal)}` +
      (k > 1 ? `; per-shard share / uniform: min ${fmt(Math.min(...shares), 2)}, max ${fmt(Math.max(...shares), 2)}` : "") +
      `; D1 projection batches: ${fmtInt(bp)} during placement, ${fmtInt(bq)} during the payments.`,
  );

  c.check(
    `stock-shards view of product ${productId} settled (every shard openTransfers = 0 and projected = available, two reads agree)`,
    settledView(view) && stable,
    per.map((s) => `${s.shard}: open ${s.openTransfers}, projected ${s.projected} vs available ${s.available}`).join("; "),
  );
  c.check(`stock-shards view: ${k} shard(s), stockShards = ${k}`, view.stockShards === k && per.length === k && per.every((s, i) => s.shard === i), `stockShards ${view.stockShards}, shards ${per.map((s) => s.shard).join(" ")}`);
  c.check(
    `shards: sum of available + held + confirmed + sold == initial ${STOCK}`,
    units === STOCK,
    `${total.available} + ${total.held} + ${total.confirmed} + ${total.sold} = ${units}`,
  );
  c.check(
    "shards: the view's total == the sum of its shards",
    ["available", "held", "confirmed", "sold"].every((key) => view.total[key] === total[key]),
    `${JSON.stringify(view.total)} vs ${JSON.stringify({ available: total.available, held: total.held, confirmed: total.confirmed, sold: total.sold })}`,
  );
  c.check(
    "products.stock (API and D1) == sum of the projected rows (view and D1) == sum of the shards' available",
    apiStock === total.available && d1Stock === total.available && total.projected === total.available && rowSum.s === total.available && rowSum.n === k,
    `API ${apiStock}, D1 products.stock ${d1Stock}, view projected ${total.projected}, D1 product_stock_shards ${rowSum.s} over ${rowSum.n} rows, available ${total.available}`,
  );
  c.check(`every order line sits on shard order_id % ${k} (order_items.stock_shard)`, misrouted === 0, `${misrouted} of ${lineCount} lines elsewhere`);
  const wrong = per.filter((s) => s.sold !== lines(s.shard, "PAID") || s.held + s.confirmed !== lines(s.shard, "NOT_PAID"));
  c.check(
    "every shard: sold == its PAID lines, held + confirmed == its NOT_PAID lines (by order_items.stock_shard)",
    wrong.length === 0,
    wrong.length
      ? wrong.map((s) => `shard ${s.shard}: sold ${s.sold} vs PAID ${lines(s.shard, "PAID")}, held ${s.held} + confirmed ${s.confirmed} vs NOT_PAID ${lines(s.shard, "NOT_PAID")}`).join("; ")
      : per.map((s) => `${s.shard}: ${s.sold}+${s.confirmed}`).join(", "),
  );
  // `requests`/`d1Batches` are load indicators, not exactness properties: a reset is reported, not failed.
  if (countsReset.length) console.log(`\nnote: the counters of shard(s) ${countsReset.join(", ")} went down between reads (object evicted and restarted): their numbers are lower bounds`);
  if (restartedLater.length) {
    console.log(
      `\nnote: shard(s) ${restartedLater.join(", ")} restarted after the payments (counters back to ${per.map((s) => `${s.requests}/${s.d1Batches}`).join(", ")} requests/batches in the final read: evicted while idle during the read-back); the table's counts come from the reads taken right after each phase`,
    );
  }
  return { productId, per, reached, reachedTotal, shares, batchesPlace: bp, batchesPay: bq, pollMs };
}

/** K = 1 and K = K side by side, the machine-readable ratio lines, and the note on this machine. */
function printComparison(runs, note) {
  const [a, b] = runs;
  console.log(`\n## K=1 vs K=${b.k} (same server, same run; each storm's ratio is to the /health ceiling measured right after it)\n`);
  const hist = (run) => (run?.hops ? Object.entries(run.hops.histogram).map(([h, n]) => `${h} x ${fmtInt(n)}`).join(", ") : "n/a");
  const histBy = (run, status) => {
    const h = run?.hops?.byStatus?.[status];
    return h ? Object.entries(h).map(([x, n]) => `${x} x ${fmtInt(n)}`).join(", ") : "-";
  };
  const metric = (run, m) => {
    const t = run?.timing?.metrics?.[m];
    if (!t) return "n/a";
    return `${fmt(t.callsPerResponse, 2)}${t.totalNested > 0 ? ` (+${fmt(t.nestedPerResponse, 2)} nested)` : ""} @ ${t.totalCalls > 0 ? fmt(t.msPerCall, 2) : "-"} ms`;
  };
  const summed = (r, f) => r.shardSummaries.reduce((n, s) => n + f(s), 0);
  const allShares = (r) => r.shardSummaries.flatMap((s) => s.shares);
  const rows = [
    ["product(s)", (r) => r.productIds.join(", ")],
    ["place req/s", (r) => fmtInt(r.place.rps)],
    ["place time s", (r) => fmt(r.place.elapsedS)],
    ["place p50 / p99 / max ms", (r) => `${fmt(r.place.p50, 0)} / ${fmt(r.place.p99, 0)} / ${fmt(r.place.max, 0)}`],
    ["/health req/s (after placement)", (r) => fmtInt(r.healthPlace.rps)],
    ["ratio place / /health", (r) => fmt(r.place.rps / r.healthPlace.rps, 3)],
    ["place status counts", (r) => statusSummary(r.place)],
    ["place hops: responses", (r) => hist(r.place)],
    ["place hops of 201s", (r) => histBy(r.place, "201")],
    ["place hops of 409s", (r) => histBy(r.place, "409")],
    ["place mean hops", (r) => fmt(r.place.hops?.mean, 2)],
    ["place do calls/resp (+nested) @ ms/call", (r) => metric(r.place, "do")],
    ["place d1 calls/resp @ ms/call", (r) => metric(r.place, "d1")],
    ["pay req/s", (r) => (r.pay ? fmtInt(r.pay.rps) : "-")],
    ["pay time s", (r) => (r.pay ? fmt(r.pay.elapsedS) : "-")],
    ["pay p50 / p99 / max ms", (r) => (r.pay ? `${fmt(r.pay.p50, 0)} / ${fmt(r.pay.p99, 0)} / ${fmt(r.pay.max, 0)}` : "-")],
    ["/health req/s (after payments)", (r) => (r.healthPay ? fmtInt(r.healthPay.rps) : "-")],
    ["ratio pay / /health", (r) => (r.pay ? fmt(r.pay.rps / r.healthPay.rps, 3) : "-")],
    ["pay status counts", (r) => (r.pay ? statusSummary(r.pay) : "-")],
    ["pay hops: responses", (r) => hist(r.pay)],
    ["pay mean hops", (r) => fmt(r.pay?.hops?.mean, 2)],
    ["pay do calls/resp @ ms/call", (r) => metric(r.pay, "do")],
    ["pay d1 calls/resp @ ms/call", (r) => metric(r.pay, "d1")],
    ["orders created / paid", (r) => `${fmtInt(r.created)} / ${fmtInt(r.paid)}`],
    ["reserve calls that reached the shards", (r) => fmtInt(summed(r, (s) => s.reachedTotal))],
    ["reserve calls per shard (min / max share vs uniform)", (r) => (r.k === 1 ? "1 shard" : `${fmt(Math.min(...allShares(r)), 2)} / ${fmt(Math.max(...allShares(r)), 2)}`)],
    ["D1 projection batches, placement (all shards)", (r) => fmtInt(summed(r, (s) => s.batchesPlace))],
    ["D1 projection batches, payments (all shards)", (r) => fmtInt(summed(r, (s) => s.batchesPay))],
    ["checks", (r) => (r.ok ? "ALL PASSED" : `${r.checksFailed} FAILED`)],
  ];
  console.log(`| | K=1 | K=${b.k} |`);
  console.log("|---|---:|---:|");
  for (const [name, f] of rows) console.log(`| ${name} | ${f(a)} | ${f(b)} |`);
  // `--shards 1` (a control: is the second storm slower only for being second?) must not print two lines of one name.
  const second = b.k === 1 ? "-second" : "";
  printRatio(a.place, a.healthPlace, { target: PLACE_TARGET, name: "orders.place.k1" });
  printD1Writes(a.place, "orders.place.k1");
  printRatio(b.place, b.healthPlace, { target: PLACE_TARGET, name: `orders.place.k${b.k}${second}` });
  printD1Writes(b.place, `orders.place.k${b.k}${second}`);
  if (a.pay) printRatio(a.pay, a.healthPay, { target: PAY_TARGET, name: "orders.pay.k1" });
  if (a.pay) printD1Writes(a.pay, "orders.pay.k1");
  if (b.pay) printRatio(b.pay, b.healthPay, { target: PAY_TARGET, name: `orders.pay.k${b.k}${second}` });
  if (b.pay) printD1Writes(b.pay, `orders.pay.k${b.k}${second}`);
  console.log(`\n${note}`);
  printLoad();
  console.log(`\n${runs.every((r) => r.ok) ? "ALL CHECKS PASSED (both storms)" : `CHECKS FAILED: ${runs.filter((r) => !r.ok).map((r) => `K=${r.k} (${r.checksFailed})`).join(", ")}`}`);
}

/**
 * The sell-out's hop distribution (issue 19): the placement answers from the first 409 on, in arrival
 * order (the stock has run out by then; what comes back is taken one unit at a time). Target: only 201
 * or 409, and a p99 of at most 5 sequential hops.
 */
function printSelloutHops(arrivals, k) {
  const first = arrivals.findIndex((a) => a.status === 409);
  const sellout = first < 0 ? [] : arrivals.slice(first);
  console.log(`\n### Sell-out hops (K=${k}): ${sellout.length} placement answers from the first 409 on`);
  if (sellout.length === 0) return;
  const hist = new Map();
  for (const a of sellout) hist.set(a.hops, (hist.get(a.hops) ?? 0) + 1);
  const sorted = sellout.map((a) => a.hops).sort((x, y) => x - y);
  const p = (q) => sorted[Math.max(0, Math.ceil(sorted.length * q) - 1)];
  const statuses = {};
  for (const a of sellout) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  console.log(`hops: ${[...hist].sort((a, b) => a[0] - b[0]).map(([h, n]) => `${h} x ${fmtInt(n)}`).join(", ")}; p50 ${p(0.5)}, p99 ${p(0.99)}, max ${sorted[sorted.length - 1]}`);
  console.log(`statuses: ${JSON.stringify(statuses)} (target: only 201/409, p99 <= 5)`);
}
