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
 * Then, per product (docs/ARCHITECTURE.md §3 "Stock conservation"):
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
 * `--url https://staging.example.com` (issue 20): the same storms against a deployed Worker, to
 * rehearse a sale (docs/OPERATIONS.md, "Rehearsing a sale on staging"). Nothing is started; products and users (with
 * their balance) are created through the admin API under a unique run tag; the D1 checks become
 * HTTP checks: every storm user's balance (`GET /points`), USE history (`GET /points/history`)
 * and order list (`GET /orders?userId=`, which also shows orders whose answer was lost), and
 * products.stock as D1 holds it (`GET /admin/products`). Per-line shard checks need D1 and are
 * left out. Needs env ADMIN_TOKEN (or --admin-token), and JWT_SECRET (or --jwt-secret) when
 * user routes need JWTs.
 *
 * Options: --orders 3000 --users 1000 --connections 300 --products 5 --stock 2000 --seed 7 --warmup 300
 *          --shards K (then the defaults are --products 1 --stock 5000)
 *          --url <base URL> [--admin-token T] [--jwt-secret S]
 * (3,000 orders average about 4 units each: demand ~12,000 > 10,000 in stock.)
 */
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { adminHeaders, api, d1Groups, prepareUserTokens, routeExists, userHeaders } from "./lib/http.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { healthCeiling, load } from "./lib/load.mjs";
import { fmt, fmtInt, printD1After, printD1Writes, printRatio, printTable, printVerdict, statusSummary } from "./lib/report.mjs";
import { Checks, latencyChecks, readStable } from "./lib/checks.mjs";
import { createUsers, rng, seedUsersD1 } from "./lib/fixtures.mjs";
import { compareShards } from "./lib/compare-shards.mjs";
import { adminListRow, readEach } from "./lib/read-back.mjs";
import { localD1, openTarget } from "./lib/target.mjs";
import { headerValue, parseServerTiming } from "./lib/server-timing.mjs";

exitWithHelpIfAsked(import.meta.url);

const ORDERS = arg("orders", 3000);
const USERS = arg("users", 1000);
const CONNECTIONS = arg("connections", 300);
/** Orders placed and paid on a separate product by separate users before the storms (not measured); 0 skips. */
const WARMUP = arg("warmup", 300);
/** `--shards K`: run the storms on K = 1, then on K stock shards (undefined: the single run of before). */
const SHARDS = process.argv.slice(2).some((a) => a === "--shards" || a.startsWith("--shards=")) ? arg("shards", 0) : undefined;
const SHARDED = SHARDS !== undefined;
/** Same bound as the admin API (src/sharding/routing.ts MAX_SHARDS). */
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

const server = await openTarget();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  if (!SHARDED) {
    console.log(`\n## bench:orders  orders=${ORDERS} users=${USERS} products=${PRODUCTS}x${STOCK} connections=${CONNECTIONS} seed=${SEED}`);
    const r = await runStorm({});
    exitCode = "skipped" in r ? 2 : r.ok ? 0 : 1;
  } else {
    console.log(
      `\n## bench:orders --shards ${SHARDS}  orders=${ORDERS} users=${USERS} products=${PRODUCTS}x${STOCK} connections=${CONNECTIONS} seed=${SEED}, twice on one server: K=1, then K=${SHARDS} (fresh products, fresh users)`,
    );
    exitCode = await compareShards(SHARDS, "stock shards", {
      runStorm,
      printComparison,
      point: "The point of the local run is exactness (conservation over the shards, lines on their shard) and the per-shard spread.",
    });
  }
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);

/**
 * Users with `balance` each: seeded into the local D1, or (with --url) created through the admin API.
 * @param {number} count
 * @param {string} namePrefix
 * @returns {Promise<number[]>}
 */
async function makeUsers(count, namePrefix) {
  const users = server.remote
    ? (await createUsers(server.url, count, { initialBalance: BALANCE, namePrefix: `${server.tag}-${namePrefix}` })).ids
    : await seedUsersD1(localD1(server), count, { initialBalance: BALANCE, namePrefix });
  await prepareUserTokens(users);
  return users;
}

/**
 * One run: fresh products (with `k` stock shards when given) and users, warm-up, the placement
 * storm, the payment storm, read-back and the checks. Without `k` it is the single run of
 * `npm run bench:orders` and prints exactly what that always printed.
 * @param {{ k?: number }} o
 * @returns {Promise<OrderStorm | { skipped: true }>}
 */
async function runStorm({ k }) {
  const sharded = k !== undefined;
  /** @param {string} s */
  const tagged = (s) => (sharded ? `${s}, K=${k}` : s);
  // Setup: hot products via the admin API, users with balance via D1.
  /** @type {number[]} */
  const productIds = [];
  /** @type {Map<number, number>} productId -> price */
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
      return {
        body: {
          name: server.remote ? `${server.tag}-hot-${i}` : `bench-hot-${i}`,
          price: ctx.price,
          stock: STOCK,
          ...(sharded ? { stockShards: k } : {}),
        },
      };
    },
    onResponse: (status, json, ctx) => {
      if (status === 201) {
        productIds.push(json.data.productId);
        prices.set(json.data.productId, ctx.price);
      }
    },
    label: `${tagged(`POST /admin/products (setup, ${PRODUCTS}`)})`,
  });
  if (productIds.length !== PRODUCTS)
    throw new Error(`product setup: ${JSON.stringify(setup.statusCounts)} ${JSON.stringify(setup.errorCodes)}`);
  const users = await makeUsers(USERS, "bench-user");
  console.log(
    `\nsetup: ${PRODUCTS} products${sharded ? ` (${productIds.join(", ")}; stockShards ${k})` : ""}, ${users.length} users ${server.remote ? "created through the admin API" : "seeded into D1"} with balance ${BALANCE}`,
  );

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
      const { json: warmProduct } = await api(
        server.url,
        "POST",
        "/api/v1/admin/products",
        // With --shards the warm-up product has the storm's K, so the K-shard storm meets warm stock objects' code paths too.
        {
          name: server.remote ? `${server.tag}-warm-up` : "bench-warm-up",
          price: 100,
          stock: WARMUP * 10,
          ...(sharded ? { stockShards: k } : {}),
        },
        { admin: true },
      );
      const warmUsers = await makeUsers(WARMUP, "bench-warm");
      /** @type {{ userId: number, orderId: number }[]} */
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
          return {
            body: { userId: warmUsers[i], orderProducts: [{ productId: warmProduct.data.productId, quantity: 1 }] },
            headers: userHeaders(ctx.userId),
          };
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
        build: (i) => ({ body: warmOrders[i], headers: userHeaders(warmOrders[i].userId) }),
        label: "warm-up payments",
      });
      await healthCeiling(server.url, { connections: CONNECTIONS, amount: 2_000, label: "warm-up /health" });
      console.log(
        `warm-up: ${warmOrders.length} orders placed and paid on product ${warmProduct.data.productId}${sharded ? ` (K=${k})` : ""} by separate users, 2,000 x /health`,
      );
    }

    // Each shard's reserve calls and D1 batches before the storm (the counters live in the objects' memory).
    const viewsBefore = sharded ? await Promise.all(productIds.map((id) => mustStockShardsView(id))) : undefined;

    // Phase 1: place.
    /** @type {{ orderId: number, userId: number, lines: OrderLine[], totalAmount: number, expectedTotal: number }[]} */
    const created = [];
    const answeredPlace = new Uint8Array(ORDERS);
    const placeStatus = new Uint16Array(ORDERS);
    const groupsBeforePlace = await d1Groups(server.url);
    /** Every placement answer in arrival order, with its sequential hops (the sell-out's distribution below). @type {Arrival[]} */
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
        return { body: plan[i], headers: userHeaders(plan[i].userId) };
      },
      onResponse: (status, json, ctx, headers) => {
        answeredPlace[ctx.i] = 1;
        placeStatus[ctx.i] = status;
        placeArrivals.push({ status, hops: parseServerTiming(headerValue(headers, "server-timing") ?? "")?.hops?.count ?? 0 });
        if (status !== 201) return;
        const p = plan[ctx.i];
        created.push({
          orderId: json.data.orderId,
          userId: p.userId,
          lines: p.orderProducts,
          totalAmount: json.data.totalAmount,
          expectedTotal: p.orderProducts.reduce((s, l) => s + (prices.get(l.productId) ?? NaN) * l.quantity, 0),
        });
      },
      label: `${tagged(`POST /orders (storm, ${ORDERS}`)})`,
    });
    printSelloutHops(placeArrivals, sharded ? k : 1);
    // Read at once: payments do not reserve, but an eviction would restart the counters.
    const viewsAfterPlace = sharded ? await Promise.all(productIds.map((id) => mustStockShardsView(id))) : undefined;
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
          return { body: { userId: toPay[i].userId, orderId: toPay[i].orderId }, headers: userHeaders(toPay[i].userId) };
        },
        onResponse: (status, json, ctx) => {
          answeredPay[ctx.i] = 1;
          if (status === 200) paid.set(toPay[ctx.i].orderId, json.data.paidAmount);
        },
        label: `${tagged(`POST /points/use (pay ${toPay.length}`)})`,
      });
      if (sharded) viewsAfterPay = await Promise.all(productIds.map((id) => mustStockShardsView(id)));
      healthPay = await healthCeiling(server.url, {
        connections: Math.min(CONNECTIONS, toPay.length),
        amount: toPay.length,
        label: sharded ? `GET /health (ceiling, after the K=${k} payments)` : "GET /health (ceiling, same shape as payments)",
      });
      groupsAfterPay = await d1Groups(server.url);
    }
    printTable(sharded ? `Throughput and latency (K=${k}, same run)` : "Throughput and latency (same run)", [
      setup,
      place,
      healthPlace,
      ...(pay && healthPay ? [pay, healthPay] : []),
    ]);
    if (!sharded) {
      printRatio(place, healthPlace, { target: PLACE_TARGET, name: "orders.place" });
      printD1Writes(place, "orders.place");
      printD1After("orders.place", groupsBeforePlace, groupsAfterPlace, place.responses);
      if (pay && healthPay) printRatio(pay, healthPay, { target: PAY_TARGET, name: "orders.pay" });
      if (pay) printD1Writes(pay, "orders.pay");
      if (pay) printD1After("orders.pay", groupsAfterPlace, groupsAfterPay, pay.responses);
      printLoad();
    }

    // Read back: products (projection, polled until stable) and every created order.
    const readStocks = async () => {
      /** @type {Record<number, number>} */
      const out = {};
      for (const id of productIds) out[id] = (await api(server.url, "GET", `/api/v1/products/${id}`)).json?.data?.stock;
      return out;
    };
    // A deployed Worker may answer catalogue reads from the edge cache for up to 5 s (src/shared/cache-policy.ts): poll slower.
    const { value: stocks, stable } = await readStable(
      readStocks,
      server.remote ? { interval: 6000, tries: 10 } : { interval: 500, tries: 20 },
    );
    /** @type {Map<number, { status: string, items: OrderLine[] }>} orderId -> the order read back */
    const orders = new Map();
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
        return { path: `/api/v1/orders/${created[i].orderId}?userId=${created[i].userId}`, headers: userHeaders(created[i].userId) };
      },
      onResponse: (status, json, ctx) => {
        if (status === 200) orders.set(ctx.o.orderId, json.data);
      },
      label: `${tagged(`GET /orders/{id}?userId= (read back ${created.length}`)})`,
    });
    printTable("Read-back", [readBack]);

    const c = new Checks(
      sharded
        ? `Stock conservation, payment exactness and latency targets (K=${k}, product(s) ${productIds.join(", ")})`
        : "Stock conservation, payment exactness and latency targets",
    );
    const unansweredPlace = ORDERS - answeredPlace.reduce((s, x) => s + x, 0);
    const unansweredPay = toPay.length - answeredPay.reduce((s, x) => s + x, 0);
    c.check(
      "every request answered (no socket errors, no timeouts)",
      unansweredPlace === 0 && unansweredPay === 0,
      unansweredPlace || unansweredPay
        ? `${unansweredPlace} orders and ${unansweredPay} payments unanswered: their outcome is unknown, conservation below still must hold`
        : "",
    );
    const placeOther = Object.keys(place.errorCodes).filter((k) => k !== "409 INSUFFICIENT_STOCK");
    c.check("order storm answers only 201 or 409 INSUFFICIENT_STOCK", placeOther.length === 0, JSON.stringify(place.errorCodes));
    if (sharded && placeOther.length > 0 && !server.remote) await attributeRefusals({ k, productIds, plan, placeStatus });
    c.check(
      "some orders hit 409 INSUFFICIENT_STOCK (demand exceeds stock)",
      (place.errorCodes["409 INSUFFICIENT_STOCK"] ?? 0) > 0,
      `${place.errorCodes["409 INSUFFICIENT_STOCK"] ?? 0}`,
    );
    const badTotals = created.filter((o) => o.totalAmount !== o.expectedTotal);
    c.check("201 totals == sum(price x quantity)", badTotals.length === 0, `${badTotals.length} differ`);
    c.check("products.stock projection stable", stable, JSON.stringify(stocks));
    c.check("every created order reads back", orders.size === created.length, `${orders.size}/${created.length}`);

    /** @param {string} status */
    const qty = (status) => {
      const m = new Map(productIds.map((id) => [id, 0]));
      for (const o of orders.values())
        if (o.status === status) for (const it of o.items) m.set(it.productId, (m.get(it.productId) ?? 0) + it.quantity);
      return m;
    };
    const notPaid = qty("NOT_PAID");
    const paidQty = qty("PAID");
    /** @type {Record<string, number>} */
    const statuses = {};
    for (const o of orders.values()) statuses[o.status] = (statuses[o.status] ?? 0) + 1;
    console.log(`\norder statuses read back: ${JSON.stringify(statuses)}`);
    console.log("\n| product | initial | stock (API) | NOT_PAID qty | PAID qty | sum |\n|---:|---:|---:|---:|---:|---:|");
    let conserved = true;
    for (const id of productIds) {
      const sum = stocks[id] + (notPaid.get(id) ?? 0) + (paidQty.get(id) ?? 0);
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
    c.check(
      "PAID orders == payments answered 200",
      unansweredPay > 0 ? paidRead >= paid.size : paidRead === paid.size,
      `${paidRead} vs ${paid.size}`,
    );
    c.check(
      "payments answered 200 for every order paid once",
      paid.size === toPay.length - unansweredPay,
      `${paid.size}/${toPay.length} ${JSON.stringify(pay?.errorCodes ?? {})}`,
    );
    const wrongPaid = [...paid].filter(([id, amount]) => amount !== created.find((o) => o.orderId === id)?.totalAmount);
    c.check("paidAmount == the order's totalAmount", wrongPaid.length === 0, `${wrongPaid.length} differ`);

    const outcome = { users, productIds, paid, stocks, notPaid, paidQty, unansweredPay };
    // D1 (local) or the API (--url): the source of truth for balances and orders, and products.stock as D1 holds it.
    const storedStock = server.remote ? await httpChecks(c, outcome) : await d1Checks(c, localD1(server), outcome);
    let shardSummaries;
    if (sharded && viewsBefore && viewsAfterPlace && viewsAfterPay) {
      shardSummaries = [];
      for (const [i, id] of productIds.entries()) {
        shardSummaries.push(
          await shardChecks(c, {
            k,
            productId: id,
            before: viewsBefore[i],
            afterPlace: viewsAfterPlace[i],
            afterPay: viewsAfterPay[i],
            apiStock: stocks[id],
            storedStock: storedStock.get(id),
          }),
        );
      }
    }
    latencyChecks(c, place, { ceiling: healthPlace });
    if (pay) latencyChecks(c, pay, healthPay ? { ceiling: healthPay } : {});
    else c.check("payment storm ran (some orders were created)", false, "no order was created, so nothing was paid");
    c.print();
    return {
      ok: c.ok(),
      k,
      productIds,
      place,
      healthPlace,
      pay,
      healthPay,
      shardSummaries,
      checksFailed: c.failed,
      created: created.length,
      paid: paid.size,
    };
  }
}

/** @typedef {{ productId: number, quantity: number }} OrderLine */
/**
 * @typedef {object} StockShardState one shard in the admin stock-shards view (src/admin/stock-shards.schemas.ts)
 * @property {number} shard
 * @property {number} available
 * @property {number} held
 * @property {number} confirmed
 * @property {number} sold
 * @property {number | null} projected
 * @property {number} openTransfers
 * @property {number} requests
 * @property {number} [d1Batches]
 */
/**
 * @typedef {object} StockShardsView
 * @property {number} productId
 * @property {number} stockShards
 * @property {{ available: number, held: number, confirmed: number, sold: number }} total
 * @property {StockShardState[]} shards
 */
/**
 * @typedef {object} ShardSummary
 * @property {number} productId
 * @property {StockShardState[]} per
 * @property {number[]} reached
 * @property {number} reachedTotal
 * @property {number[]} shares
 * @property {number} batchesPlace
 * @property {number} batchesPay
 * @property {number} pollMs
 */
/**
 * @typedef {object} OrderStorm one run's outcome
 * @property {boolean} ok
 * @property {number | undefined} k
 * @property {number[]} productIds
 * @property {import("./lib/load.mjs").LoadRun} place
 * @property {import("./lib/load.mjs").LoadRun} healthPlace
 * @property {import("./lib/load.mjs").LoadRun | undefined} pay
 * @property {import("./lib/load.mjs").LoadRun | undefined} healthPay
 * @property {ShardSummary[] | undefined} shardSummaries
 * @property {number} checksFailed
 * @property {number} created
 * @property {number} paid
 */

/**
 * What a run's checks read back through the API, per product and per order.
 * @typedef {object} Outcome
 * @property {number[]} users       the storm's users (not the warm-up's)
 * @property {number[]} productIds
 * @property {Map<number, number>} paid      orderId -> paidAmount of every payment answered 200
 * @property {Record<number, number>} stocks productId -> stock (GET /products/{id})
 * @property {Map<number, number>} notPaid   productId -> quantity in NOT_PAID orders read back
 * @property {Map<number, number>} paidQty   productId -> quantity in PAID orders read back
 * @property {number} unansweredPay
 */

/**
 * The local run's checks against D1: balances, USE history, every order of the products (also
 * those whose answer was lost), products.stock. Returns products.stock per product.
 * @param {Checks} c
 * @param {import("./lib/fixtures.mjs").LocalD1} d1
 * @param {Outcome} o
 * @returns {Promise<Map<number, number>>}
 */
async function d1Checks(c, d1, { users, productIds, paid, stocks, notPaid, paidQty, unansweredPay }) {
  const paidSum = [...paid.values()].reduce((s, x) => s + x, 0);
  // Only the storm's users (the warm-up's users were seeded after them and paid too).
  const [minUser, maxUser] = [Math.min(...users), Math.max(...users)];
  const { total } = await d1.first(
    `SELECT COALESCE(SUM(balance), 0) AS total FROM user_balances WHERE user_id BETWEEN ${minUser} AND ${maxUser}`,
  );
  c.check(
    "sum of balances == initial - sum of paid amounts",
    unansweredPay > 0 || total === USERS * BALANCE - paidSum,
    `${total} vs ${USERS * BALANCE} - ${paidSum}`,
  );
  const { n: useRows } = await d1.first(
    `SELECT COUNT(*) AS n FROM point_history WHERE type = 'USE' AND user_id BETWEEN ${minUser} AND ${maxUser}`,
  );
  c.check("USE history rows == payments answered 200", unansweredPay > 0 || useRows === paid.size, `${useRows} vs ${paid.size}`);
  /** @type {{ productId: number, status: string, q: number }[]} */
  const d1Rows = await d1.all(
    `SELECT oi.product_id AS productId, o.status AS status, SUM(oi.quantity) AS q
     FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.product_id IN (${productIds.join(",")}) GROUP BY oi.product_id, o.status`,
  );
  const d1Mismatch = d1Rows.filter((r) => {
    const fromApi = r.status === "NOT_PAID" ? notPaid.get(r.productId) : r.status === "PAID" ? paidQty.get(r.productId) : undefined;
    return fromApi !== undefined && fromApi !== r.q;
  });
  const d1Conserved = productIds.every((id) => {
    /** @param {string} st */
    const q = (st) => d1Rows.find((r) => r.productId === id && r.status === st)?.q ?? 0;
    return stocks[id] + q("NOT_PAID") + q("PAID") === STOCK;
  });
  c.check("conservation with every order D1 holds (also those whose answer was lost)", d1Conserved);
  /** @type {{ status: string, n: number }[]} */
  const d1Statuses = await d1.all("SELECT status, COUNT(*) AS n FROM orders GROUP BY status");
  c.check(
    "D1 order_items per product/status == the API read-back",
    d1Mismatch.length === 0,
    `D1 orders by status: ${JSON.stringify(Object.fromEntries(d1Statuses.map((r) => [r.status, r.n])))}`,
  );
  /** @type {{ id: number, stock: number }[]} */
  const d1Stock = await d1.all(`SELECT id, stock FROM products WHERE id IN (${productIds.join(",")})`);
  c.check(
    "D1 products.stock == the API's stock",
    d1Stock.every((r) => r.stock === stocks[r.id]),
    JSON.stringify(Object.fromEntries(d1Stock.map((r) => [r.id, r.stock]))),
  );
  return new Map(d1Stock.map((r) => [r.id, r.stock]));
}

/**
 * A `--url` run's checks through the API only, one request per storm user for each of
 * `GET /points`, `GET /points/history` and `GET /orders?userId=` (their order lists show every
 * order D1 holds for them, also those whose answer was lost; FAILED placements are not listed
 * and hold nothing), and `GET /admin/products` for products.stock as D1 holds it. Returns it.
 * @param {Checks} c
 * @param {Outcome} o
 * @returns {Promise<Map<number, number>>}
 */
async function httpChecks(c, { users, productIds, paid, stocks, notPaid, paidQty, unansweredPay }) {
  const paidSum = [...paid.values()].reduce((s, x) => s + x, 0);
  /** @param {string} route */
  const perUser = (route) =>
    readEach(
      server.url,
      users,
      (u) => ({ path: `/api/v1/${route}${route.includes("?") ? "&" : "?"}userId=${u}`, userId: u }),
      `GET /${route.split("?")[0]}?userId= (read back ${users.length} users)`,
    );
  const balances = await perUser("points");
  const history = await perUser("points/history?limit=100");
  const lists = await perUser("orders?limit=100");
  printTable("Read-back per user", [balances.run, history.run, lists.run]);
  const all = (/** @type {{ data: Map<number, any>, failed: number }} */ r) => r.failed === 0 && r.data.size === users.length;
  c.check(
    "every storm user's balance, history and order list read back (200)",
    all(balances) && all(history) && all(lists),
    `${balances.data.size}, ${history.data.size}, ${lists.data.size} of ${users.length}`,
  );
  const truncated = [...history.data.values(), ...lists.data.values()].filter((d) => d?.nextCursor).length;
  c.check("every history and order list fits one page of 100", truncated === 0, `${truncated} lists have more pages`);

  const total = [...balances.data.values()].reduce((s, d) => s + (d?.balance ?? 0), 0);
  c.check(
    "sum of balances (GET /points) == initial - sum of paid amounts",
    unansweredPay > 0 || total === USERS * BALANCE - paidSum,
    `${total} vs ${USERS * BALANCE} - ${paidSum}`,
  );
  const useRows = [...history.data.values()].reduce(
    (n, d) => n + (d?.items ?? []).filter((/** @type {{ type: string }} */ h) => h.type === "USE").length,
    0,
  );
  c.check(
    "USE history entries (GET /points/history) == payments answered 200",
    unansweredPay > 0 || useRows === paid.size,
    `${useRows} vs ${paid.size}`,
  );

  /** @type {Map<string, number>} "<productId> <status>" -> quantity over every listed order */
  const listed = new Map();
  /** @type {Record<string, number>} */
  const statuses = {};
  for (const d of lists.data.values()) {
    for (const o of d?.items ?? []) {
      statuses[o.status] = (statuses[o.status] ?? 0) + 1;
      for (const it of o.items) listed.set(`${it.productId} ${o.status}`, (listed.get(`${it.productId} ${o.status}`) ?? 0) + it.quantity);
    }
  }
  /** @param {number} id @param {string} st */
  const q = (id, st) => listed.get(`${id} ${st}`) ?? 0;
  const listMismatch = productIds.filter((id) => q(id, "NOT_PAID") !== (notPaid.get(id) ?? 0) || q(id, "PAID") !== (paidQty.get(id) ?? 0));
  c.check(
    "conservation with every order the users' lists show (also those whose answer was lost)",
    productIds.every((id) => stocks[id] + q(id, "NOT_PAID") + q(id, "PAID") === STOCK),
  );
  c.check(
    "GET /orders?userId= per product/status == the read-back by id",
    listMismatch.length === 0,
    `listed orders by status: ${JSON.stringify(statuses)}${listMismatch.length ? `; differ on ${listMismatch.join(", ")}` : ""}`,
  );
  /** @type {Map<number, number>} */
  const stored = new Map();
  for (const id of productIds) stored.set(id, (await adminListRow(server.url, "products", id))?.stock);
  c.check(
    "GET /admin/products stock (D1) == the API's stock",
    productIds.every((id) => stored.get(id) === stocks[id]),
    JSON.stringify(Object.fromEntries(stored)),
  );
  return stored;
}

/**
 * `GET /admin/products/{id}/stock-shards` data; throws when the route is not in the build.
 * @param {number} productId
 */
async function mustStockShardsView(productId) {
  const v = await stockShardsView(productId);
  if (!v) throw new Error(`no stock-shards view of product ${productId}`);
  return v;
}

/**
 * `GET /admin/products/{id}/stock-shards` data, or undefined when the route is not in the build.
 * @param {number} productId
 * @returns {Promise<StockShardsView | undefined>}
 */
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
 * (so their FAILED rows can only be those); the rest is reported as unattributed. Local runs only.
 * @param {{ k: number, productIds: number[], plan: { userId: number, orderProducts: OrderLine[] }[], placeStatus: Uint16Array }} o
 */
async function attributeRefusals({ k, productIds, plan, placeStatus }) {
  /** @type {Map<number, { status: number, key: string }[]>} userId -> its non-201 answers (key: its lines' quantities) */
  const failedByUser = new Map();
  /** @param {OrderLine[]} lines */
  const keyOf = (lines) =>
    lines
      .map((l) => `${l.productId}x${l.quantity}`)
      .sort()
      .join(",");
  plan.forEach((o, i) => {
    const status = placeStatus[i] ?? 0;
    if (status && status !== 201)
      failedByUser.set(o.userId, [...(failedByUser.get(o.userId) ?? []), { status, key: keyOf(o.orderProducts) }]);
  });
  /** @type {{ orderId: number, userId: number, productId: number, quantity: number, shard: number }[]} */
  const rows = await localD1(server).all(
    `SELECT o.id AS orderId, o.user_id AS userId, oi.product_id AS productId, oi.quantity AS quantity, oi.stock_shard AS shard
     FROM orders o JOIN order_items oi ON oi.order_id = o.id
     WHERE o.status = 'FAILED' AND oi.product_id IN (${productIds.join(",")}) AND o.user_id BETWEEN ? AND ?`,
    Math.min(...plan.map((o) => o.userId)),
    Math.max(...plan.map((o) => o.userId)),
  );
  /** @type {Map<number, { userId: number, lines: OrderLine[], shards: Set<number> }>} orderId -> its user, lines and their shards */
  const orders = new Map();
  for (const r of rows) {
    const o = orders.get(r.orderId) ?? { userId: r.userId, lines: [], shards: new Set() };
    o.lines.push({ productId: r.productId, quantity: r.quantity });
    o.shards.add(r.shard);
    orders.set(r.orderId, o);
  }
  /** @type {Map<number, { orderId: number, key: string, shards: Set<number> }[]>} */
  const byUser = new Map();
  for (const [orderId, o] of orders)
    byUser.set(o.userId, [...(byUser.get(o.userId) ?? []), { orderId, key: keyOf(o.lines), shards: o.shards }]);
  /** @type {Map<number, { shards: number[], orders: number[], unattributed: number }>} status -> count per shard, orders, unattributed */
  const byStatus = new Map();
  for (const [userId, answers] of failedByUser) {
    const mine = byUser.get(userId) ?? [];
    for (const ans of answers) {
      if (ans.status === 409) continue;
      const entry = byStatus.get(ans.status) ?? { shards: new Array(k).fill(0), orders: /** @type {number[]} */ ([]), unattributed: 0 };
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

/**
 * Nothing in flight between shards and every shard's D1 row written.
 * @param {StockShardsView} v
 */
function settledView(v) {
  return v.shards.every((s) => s.openTransfers === 0 && s.projected === s.available);
}
/** @param {StockShardsView} v */
function viewKey(v) {
  return JSON.stringify(v.shards.map((s) => [s.available, s.held, s.confirmed, s.sold, s.projected, s.openTransfers]));
}

/**
 * The admin stock-shards view after both storms (polled until every shard has openTransfers = 0
 * and projected = available, and two reads 500 ms apart agree), its checks against D1's order
 * lines, and the per-shard table: reserve calls that reached the shard during the placement
 * storm (its `requests` right after the storm minus before), its share against a uniform 1/K,
 * its units, and the D1 projection batches it sent during placement and during payment.
 * @param {Checks} c
 * @param {{ k: number, productId: number, before: StockShardsView, afterPlace: StockShardsView, afterPay: StockShardsView,
 *   apiStock: number, storedStock: number | undefined }} o
 * @returns {Promise<ShardSummary>}
 */
async function shardChecks(c, { k, productId, before, afterPlace, afterPay, apiStock, storedStock }) {
  const pollStarted = Date.now();
  const mustView = () => mustStockShardsView(productId);
  let view = await mustView();
  let stable = false;
  for (let i = 0; i < 60; i++) {
    if (settledView(view)) {
      await new Promise((r) => setTimeout(r, 500));
      const again = await mustView();
      stable = viewKey(again) === viewKey(view);
      view = again;
      if (stable && settledView(view)) break;
    } else {
      await new Promise((r) => setTimeout(r, 250));
      view = await mustView();
    }
  }
  const pollMs = Date.now() - pollStarted;
  const per = [...view.shards].sort((a, b) => a.shard - b.shard);
  // The order lines' shards are only in D1 (order_items.stock_shard): a --url run leaves those checks out.
  const d1 = server.d1;
  /** @type {{ shard: number, status: string, q: number, n: number }[]} */
  const lineRows = d1
    ? await d1.all(
        `SELECT oi.stock_shard AS shard, o.status AS status, SUM(oi.quantity) AS q, COUNT(*) AS n
         FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.product_id = ? GROUP BY oi.stock_shard, o.status`,
        productId,
      )
    : [];
  /**
   * @param {number} shard
   * @param {string} status
   */
  const lines = (shard, status) =>
    d1 ? lineRows.filter((r) => r.shard === shard && r.status === status).reduce((a, r) => a + r.q, 0) : NaN;
  const facts = d1
    ? {
        misrouted: Number(
          (await d1.first("SELECT COUNT(*) AS n FROM order_items WHERE product_id = ? AND stock_shard != order_id % ?", productId, k)).n,
        ),
        lineCount: Number((await d1.first("SELECT COUNT(*) AS n FROM order_items WHERE product_id = ?", productId)).n),
        rowSum: /** @type {{ s: number, n: number }} */ (
          await d1.first("SELECT COALESCE(SUM(available), 0) AS s, COUNT(*) AS n FROM product_stock_shards WHERE product_id = ?", productId)
        ),
      }
    : undefined;

  /** @param {StockShardsView} v */
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
  const countsReset = per.filter((_s, i) => reached[i] < 0 || batchesPlace[i] < 0 || batchesPay[i] < 0).map((s) => s.shard);
  const restartedLater = per.filter((s) => s.requests < (p.get(s.shard)?.requests ?? 0)).map((s) => s.shard);
  const reachedTotal = reached.reduce((x, y) => x + y, 0);
  const shares = reached.map((r) => (reachedTotal > 0 ? (r / reachedTotal) * k : NaN));
  /** @param {(s: StockShardState) => number} f */
  const sum = (f) => per.reduce((n, s) => n + f(s), 0);
  const total = {
    available: sum((s) => s.available),
    held: sum((s) => s.held),
    confirmed: sum((s) => s.confirmed),
    sold: sum((s) => s.sold),
    projected: sum((s) => s.projected ?? 0),
  };
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
    `| all | ${fmtInt(reachedTotal)} | 100% | | ${fmtInt(total.available)} | ${fmtInt(total.held)} | ${fmtInt(total.confirmed)} | ${fmtInt(total.sold)} | ${fmtInt(total.projected)} | ${d1 ? fmtInt(lineRows.filter((r) => r.status === "NOT_PAID").reduce((x, r) => x + r.q, 0)) : "-"} | ${d1 ? fmtInt(lineRows.filter((r) => r.status === "PAID").reduce((x, r) => x + r.q, 0)) : "-"} | ${sum((s) => s.openTransfers)} | ${fmtInt(bp)} | ${fmtInt(bq)} |`,
  );
  console.log(
    (facts
      ? `\norder lines of the product in D1: ${fmtInt(facts.lineCount)} (${[
          ...lineRows.reduce((m, r) => m.set(r.status, (m.get(r.status) ?? 0) + r.n), new Map()),
        ]
          .map(([st, n]) => `${st} ${fmtInt(n)}`)
          .join(", ")}); `
      : "\norder lines by shard: only in D1 (not on a --url run); ") +
      `reserve calls that reached the shards during the storm: ${fmtInt(reachedTotal)}` +
      (k > 1 ? `; per-shard share / uniform: min ${fmt(Math.min(...shares), 2)}, max ${fmt(Math.max(...shares), 2)}` : "") +
      `; D1 projection batches: ${fmtInt(bp)} during placement, ${fmtInt(bq)} during the payments.`,
  );

  c.check(
    `stock-shards view of product ${productId} settled (every shard openTransfers = 0 and projected = available, two reads agree)`,
    settledView(view) && stable,
    per.map((s) => `${s.shard}: open ${s.openTransfers}, projected ${s.projected} vs available ${s.available}`).join("; "),
  );
  c.check(
    `stock-shards view: ${k} shard(s), stockShards = ${k}`,
    view.stockShards === k && per.length === k && per.every((s, i) => s.shard === i),
    `stockShards ${view.stockShards}, shards ${per.map((s) => s.shard).join(" ")}`,
  );
  c.check(
    `shards: sum of available + held + confirmed + sold == initial ${STOCK}`,
    units === STOCK,
    `${total.available} + ${total.held} + ${total.confirmed} + ${total.sold} = ${units}`,
  );
  c.check(
    "shards: the view's total == the sum of its shards",
    /** @type {const} */ (["available", "held", "confirmed", "sold"]).every((key) => view.total[key] === total[key]),
    `${JSON.stringify(view.total)} vs ${JSON.stringify({ available: total.available, held: total.held, confirmed: total.confirmed, sold: total.sold })}`,
  );
  if (facts) d1ShardChecks(c, { k, per, total, apiStock, storedStock, facts, lines });
  else {
    c.check(
      "products.stock (API and GET /admin/products) == sum of the projected rows (view) == sum of the shards' available",
      apiStock === total.available && storedStock === total.available && total.projected === total.available,
      `API ${apiStock}, GET /admin/products stock ${storedStock}, view projected ${total.projected}, available ${total.available}`,
    );
  }
  // `requests`/`d1Batches` are load indicators, not exactness properties: a reset is reported, not failed.
  if (countsReset.length)
    console.log(
      `\nnote: the counters of shard(s) ${countsReset.join(", ")} went down between reads (object evicted and restarted): their numbers are lower bounds`,
    );
  if (restartedLater.length) {
    console.log(
      `\nnote: shard(s) ${restartedLater.join(", ")} restarted after the payments (counters back to ${per.map((s) => `${s.requests}/${s.d1Batches}`).join(", ")} requests/batches in the final read: evicted while idle during the read-back); the table's counts come from the reads taken right after each phase`,
    );
  }
  return { productId, per, reached, reachedTotal, shares, batchesPlace: bp, batchesPay: bq, pollMs };
}

/**
 * The per-shard checks only D1 can answer (a local run): products.stock and the projected rows,
 * every order line on its shard, and each shard's units against its lines.
 * @param {Checks} c
 * @param {{ k: number, per: StockShardState[], total: { available: number, projected: number }, apiStock: number, storedStock: number | undefined,
 *   facts: { misrouted: number, lineCount: number, rowSum: { s: number, n: number } }, lines: (shard: number, status: string) => number }} o
 */
function d1ShardChecks(c, { k, per, total, apiStock, storedStock, facts, lines }) {
  const { misrouted, lineCount, rowSum } = facts;
  c.check(
    "products.stock (API and D1) == sum of the projected rows (view and D1) == sum of the shards' available",
    apiStock === total.available &&
      storedStock === total.available &&
      total.projected === total.available &&
      rowSum.s === total.available &&
      rowSum.n === k,
    `API ${apiStock}, D1 products.stock ${storedStock}, view projected ${total.projected}, D1 product_stock_shards ${rowSum.s} over ${rowSum.n} rows, available ${total.available}`,
  );
  c.check(
    `every order line sits on shard order_id % ${k} (order_items.stock_shard)`,
    misrouted === 0,
    `${misrouted} of ${lineCount} lines elsewhere`,
  );
  const wrong = per.filter((s) => s.sold !== lines(s.shard, "PAID") || s.held + s.confirmed !== lines(s.shard, "NOT_PAID"));
  c.check(
    "every shard: sold == its PAID lines, held + confirmed == its NOT_PAID lines (by order_items.stock_shard)",
    wrong.length === 0,
    wrong.length
      ? wrong
          .map(
            (s) =>
              `shard ${s.shard}: sold ${s.sold} vs PAID ${lines(s.shard, "PAID")}, held ${s.held} + confirmed ${s.confirmed} vs NOT_PAID ${lines(s.shard, "NOT_PAID")}`,
          )
          .join("; ")
      : per.map((s) => `${s.shard}: ${s.sold}+${s.confirmed}`).join(", "),
  );
}

/**
 * K = 1 and K = K side by side, the machine-readable ratio lines, and the note on this machine.
 * @param {OrderStorm[]} runs
 * @param {string} note
 */
function printComparison(runs, note) {
  const [a, b] = runs;
  console.log(`\n## K=1 vs K=${b.k} (same server, same run; each storm's ratio is to the /health ceiling measured right after it)\n`);
  /** @param {import("./lib/load.mjs").LoadRun | undefined} run */
  const hist = (run) =>
    run?.hops
      ? Object.entries(run.hops.histogram)
          .map(([h, n]) => `${h} x ${fmtInt(n)}`)
          .join(", ")
      : "n/a";
  /**
   * @param {import("./lib/load.mjs").LoadRun | undefined} run
   * @param {number | string} status
   */
  const histBy = (run, status) => {
    const h = run?.hops?.byStatus?.[Number(status)];
    return h
      ? Object.entries(h)
          .map(([x, n]) => `${x} x ${fmtInt(n)}`)
          .join(", ")
      : "-";
  };
  /**
   * @param {import("./lib/load.mjs").LoadRun | undefined} run
   * @param {string} m
   */
  const metric = (run, m) => {
    const t = run?.timing?.metrics?.[m];
    if (!t) return "n/a";
    return `${fmt(t.callsPerResponse, 2)}${t.totalNested > 0 ? ` (+${fmt(t.nestedPerResponse, 2)} nested)` : ""} @ ${t.totalCalls > 0 ? fmt(t.msPerCall, 2) : "-"} ms`;
  };
  /**
   * @param {OrderStorm} r
   * @param {(s: ShardSummary) => number} f
   */
  const summed = (r, f) => (r.shardSummaries ?? []).reduce((n, s) => n + f(s), 0);
  /** @param {OrderStorm} r */
  const allShares = (r) => (r.shardSummaries ?? []).flatMap((s) => s.shares);
  /** @type {[string, (r: OrderStorm) => string][]} */
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
    ["ratio pay / /health", (r) => (r.pay ? fmt(r.pay.rps / (r.healthPay?.rps ?? NaN), 3) : "-")],
    ["pay status counts", (r) => (r.pay ? statusSummary(r.pay) : "-")],
    ["pay hops: responses", (r) => hist(r.pay)],
    ["pay mean hops", (r) => fmt(r.pay?.hops?.mean, 2)],
    ["pay do calls/resp @ ms/call", (r) => metric(r.pay, "do")],
    ["pay d1 calls/resp @ ms/call", (r) => metric(r.pay, "d1")],
    ["orders created / paid", (r) => `${fmtInt(r.created)} / ${fmtInt(r.paid)}`],
    ["reserve calls that reached the shards", (r) => fmtInt(summed(r, (s) => s.reachedTotal))],
    [
      "reserve calls per shard (min / max share vs uniform)",
      (r) => (r.k === 1 ? "1 shard" : `${fmt(Math.min(...allShares(r)), 2)} / ${fmt(Math.max(...allShares(r)), 2)}`),
    ],
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
  if (a.pay && a.healthPay) printRatio(a.pay, a.healthPay, { target: PAY_TARGET, name: "orders.pay.k1" });
  if (a.pay) printD1Writes(a.pay, "orders.pay.k1");
  if (b.pay && b.healthPay) printRatio(b.pay, b.healthPay, { target: PAY_TARGET, name: `orders.pay.k${b.k}${second}` });
  if (b.pay) printD1Writes(b.pay, `orders.pay.k${b.k}${second}`);
  console.log(`\n${note}`);
  printLoad();
  printVerdict(runs);
}

/**
 * The sell-out's hop distribution (issue 19): the placement answers from the first 409 on, in arrival
 * order (the stock has run out by then; what comes back is taken one unit at a time). Target: only 201
 * or 409, and a p99 of at most 5 sequential hops.
 * @typedef {{ status: number, hops: number }} Arrival
 * @param {Arrival[]} arrivals
 * @param {number} k
 */
function printSelloutHops(arrivals, k) {
  const first = arrivals.findIndex((a) => a.status === 409);
  const sellout = first < 0 ? [] : arrivals.slice(first);
  console.log(`\n### Sell-out hops (K=${k}): ${sellout.length} placement answers from the first 409 on`);
  if (sellout.length === 0) return;
  /** @type {Map<number, number>} */
  const hist = new Map();
  for (const a of sellout) hist.set(a.hops, (hist.get(a.hops) ?? 0) + 1);
  const sorted = sellout.map((a) => a.hops).sort((x, y) => x - y);
  const p = (/** @type {number} */ q) => sorted[Math.max(0, Math.ceil(sorted.length * q) - 1)];
  /** @type {Record<number, number>} */
  const statuses = {};
  for (const a of sellout) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  console.log(
    `hops: ${[...hist]
      .sort((a, b) => a[0] - b[0])
      .map(([h, n]) => `${h} x ${fmtInt(n)}`)
      .join(", ")}; p50 ${p(0.5)}, p99 ${p(0.99)}, max ${sorted[sorted.length - 1]}`,
  );
  console.log(`statuses: ${JSON.stringify(statuses)} (target: only 201/409, p99 <= 5)`);
}
