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
 * Options: --orders 3000 --users 1000 --connections 300 --products 5 --stock 2000 --seed 7 --warmup 300
 * (3,000 orders average about 4 units each: demand ~12,000 > 10,000 in stock.)
 */
import { startServer } from "./server.mjs";
import {
  Checks,
  adminHeaders,
  arg,
  healthCeiling,
  latencyChecks,
  load,
  printLoad,
  printMachine,
  printRatio,
  printTable,
  readStable,
  rng,
  routeExists,
  seedUsersD1,
} from "./lib.mjs";

const ORDERS = arg("orders", 3000);
const USERS = arg("users", 1000);
const CONNECTIONS = arg("connections", 300);
/** Orders placed and paid on a separate product by separate users before the storms (not measured); 0 skips. */
const WARMUP = arg("warmup", 300);
const PRODUCTS = arg("products", 5);
const STOCK = arg("stock", 2000);
const SEED = arg("seed", 7);
const BALANCE = 1_000_000;

const server = await startServer();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  console.log(`\n## bench:orders  orders=${ORDERS} users=${USERS} products=${PRODUCTS}x${STOCK} connections=${CONNECTIONS} seed=${SEED}`);

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
      return { body: { name: `bench-hot-${i}`, price: ctx.price, stock: STOCK } };
    },
    onResponse: (status, json, ctx) => {
      if (status === 201) {
        productIds.push(json.data.productId);
        prices.set(json.data.productId, ctx.price);
      }
    },
    label: `POST /admin/products (setup, ${PRODUCTS})`,
  });
  if (productIds.length !== PRODUCTS) throw new Error(`product setup: ${JSON.stringify(setup.statusCounts)} ${JSON.stringify(setup.errorCodes)}`);
  const users = await seedUsersD1(server.d1, USERS, { initialBalance: BALANCE });
  console.log(`\nsetup: ${PRODUCTS} products, ${users.length} users seeded into D1 with balance ${BALANCE}`);

  const missing = [];
  for (const p of ["/api/v1/orders", "/api/v1/points/use"]) if (!(await routeExists(server.url, p))) missing.push(p);
  if (missing.length) {
    console.log(`\nSKIPPED: ${missing.map((p) => `POST ${p}`).join(", ")} not in this build (404 NOT_FOUND). Setup worked.`);
    exitCode = 2;
  } else {
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
        body: JSON.stringify({ name: "bench-warm-up", price: 100, stock: WARMUP * 10 }),
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
      console.log(`warm-up: ${warmOrders.length} orders placed and paid on product ${warmProduct.data.productId} by separate users, 2,000 x /health`);
    }

    // Phase 1: place.
    const created = []; // {orderId, userId, lines, totalAmount, expectedTotal}
    const answeredPlace = new Uint8Array(ORDERS);
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
      onResponse: (status, json, ctx) => {
        answeredPlace[ctx.i] = 1;
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
      label: `POST /orders (storm, ${ORDERS})`,
    });
    const healthPlace = await healthCeiling(server.url, { connections: CONNECTIONS, amount: ORDERS, label: "GET /health (ceiling, same shape as the order storm)" });

    // Phase 2: pay every other created order.
    const toPay = created.filter((_, i) => i % 2 === 0);
    const paid = new Map(); // orderId -> paidAmount
    const answeredPay = new Uint8Array(toPay.length);
    let pay;
    let healthPay;
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
        label: `POST /points/use (pay ${toPay.length})`,
      });
      healthPay = await healthCeiling(server.url, {
        connections: Math.min(CONNECTIONS, toPay.length),
        amount: toPay.length,
        label: "GET /health (ceiling, same shape as payments)",
      });
    }
    printTable("Throughput and latency (same run)", [setup, place, healthPlace, ...(pay ? [pay, healthPay] : [])]);
    printRatio(place, healthPlace, { target: 0.2, name: "orders.place" });
    if (pay) printRatio(pay, healthPay, { target: 0.25, name: "orders.pay" });
    printLoad();

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
      label: `GET /orders/{id}?userId= (read back ${created.length})`,
    });
    printTable("Read-back", [readBack]);

    const c = new Checks("Stock conservation, payment exactness and latency targets");
    const unansweredPlace = ORDERS - answeredPlace.reduce((s, x) => s + x, 0);
    const unansweredPay = toPay.length - answeredPay.reduce((s, x) => s + x, 0);
    c.check(
      "every request answered (no socket errors, no timeouts)",
      unansweredPlace === 0 && unansweredPay === 0,
      unansweredPlace || unansweredPay ? `${unansweredPlace} orders and ${unansweredPay} payments unanswered: their outcome is unknown, conservation below still must hold` : "",
    );
    const placeOther = Object.keys(place.errorCodes).filter((k) => k !== "409 INSUFFICIENT_STOCK");
    c.check("order storm answers only 201 or 409 INSUFFICIENT_STOCK", placeOther.length === 0, JSON.stringify(place.errorCodes));
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
    latencyChecks(c, place, { ceiling: healthPlace });
    if (pay) latencyChecks(c, pay, { ceiling: healthPay });
    else c.check("payment storm ran (some orders were created)", false, "no order was created, so nothing was paid");
    c.print();
    exitCode = c.ok() ? 0 : 1;
  }
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
