#!/usr/bin/env node
/**
 * `npm run bench:coupons`: first-come coupon storm.
 *
 * One AMOUNT coupon (1,000 won off, quantity 1,000) and 10,000 users; 10,000 concurrent
 * `POST /api/v1/coupons/issue {userId, couponId}`, one per distinct user, over several
 * hundred connections. Then the 1,000 winners try again (de-duplication). Prints
 * throughput/latency beside the same-run `/health` ceiling (target: 0.5 of it), and checks
 * exactness and the storm's latency targets (p99 <= 5 x p50, max < 5,000 ms):
 *   - exactly 1,000 x 201, every other answer 409 COUPON_SOLD_OUT, nothing else
 *   - D1 (polled until stable: the DO may write behind): exactly 1,000 user_coupons rows
 *     for the coupon, 1,000 distinct users, the same users that got 201,
 *     coupons.issued_quantity = 1,000
 *   - the retry by winners issues nothing (409 COUPON_ALREADY_ISSUED, docs/ARCHITECTURE.md §3 order)
 *   - `GET /coupons?userId=` shows the coupon to a sample of winners and not to losers
 *
 * `npm run bench:coupons:winners` (`--all-winners`): the winners' path under load instead of
 * the sold-out path: 5,000 users on quantity 5,000, so every answer must be 201 and D1 must
 * hold exactly 5,000 rows for exactly those users (ratio target 0.25). The retry then
 * replays a sample of 1,000 winners (`--retry N`).
 *
 * `npm run bench:coupons:sharded` (`--shards K`, 1..32; issue 13): the same storm twice on
 * the same server, first on a coupon with K = 1, then on a fresh coupon sharded over K
 * CouponIssuer objects, each with fresh users (same sizes) and its own warm-up coupon of the
 * same K. Both storms pass every check above; each also checks the admin shards view
 * (`GET /admin/coupons/{id}/shards`, polled until every shard has unsynced = 0 and
 * openTransfers = 0): sum of held = quantity, sum of issued = the winners, free = quantity -
 * winners (0 here), issued <= held on every shard, and every shard issued exactly the 201s of
 * the users homed on it (`homeShard`). Prints a per-shard table (users homed, issuance
 * requests that reached the shard, its share against a uniform 1/K, issued, held, free),
 * client requests vs requests that reached the objects (after a sold-out the Worker isolate
 * refuses the coupon itself for SOLD_OUT_TTL_MS = 1 s), K = 1 and K = K side by side, and
 * `ratio coupons.storm.k1=..` / `ratio coupons.storm.k<K>=..` lines (`coupons.all-winners.k..`
 * with `--all-winners`). Locally every object runs in one workerd process on this machine's
 * cores, so K shards cannot show more than one object's worth of capacity here: the local run
 * is about exactness and the per-shard spread; the capacity claim is `npm run sim:hot-coupon`.
 *
 * Users are seeded straight into D1 (10,000 admin calls would take longer than the
 * storm; `--http-users` uses the admin API instead). The coupon goes through the admin API.
 *
 * `--url https://staging.example.com` (issue 20): the same storm against a deployed Worker, to
 * rehearse a sale (docs/OPERATIONS.md, "Rehearsing a sale on staging"). Nothing is started; users and coupons are
 * created through the admin API under a unique run tag; the D1 checks become HTTP checks: the
 * objects' count (`GET /coupons/{id}`: issued, remaining), D1's count (`GET /admin/coupons`:
 * issued), and every user's own coupon list (`GET /coupons?userId=`) against the 201s. Needs
 * env ADMIN_TOKEN (or --admin-token), and JWT_SECRET (or --jwt-secret) when user routes need JWTs.
 *
 * Options: --users 10000 --quantity 1000 --connections 300 --warmup 500 --http-users
 *          --all-winners (defaults become --users 5000 --quantity <users>) --retry <winners>
 *          --shards K (K = 1 storm, then K = K storm, same server)
 *          --url <base URL> [--admin-token T] [--jwt-secret S]
 */
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { api, mapLimit, prepareUserTokens, routeExists, userHeaders } from "./lib/http.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { healthCeiling, load } from "./lib/load.mjs";
import { fmt, fmtInt, printRatio, printTable, printVerdict, statusSummary } from "./lib/report.mjs";
import { Checks, latencyChecks, readStable } from "./lib/checks.mjs";
import { createUsers, isoWithOffset, seedUsersD1 } from "./lib/fixtures.mjs";
import { compareShards } from "./lib/compare-shards.mjs";
import { adminListRow, readEach } from "./lib/read-back.mjs";
import { localD1, openTarget } from "./lib/target.mjs";

exitWithHelpIfAsked(import.meta.url);

const ALL_WINNERS = process.argv.includes("--all-winners");
const USERS = arg("users", ALL_WINNERS ? 5000 : 10_000);
const QUANTITY = arg("quantity", ALL_WINNERS ? USERS : 1000);
const CONNECTIONS = arg("connections", 300);
/** Issue requests on a separate coupon before the storm (quantity WARMUP, 2 x WARMUP requests); 0 skips it. */
const WARMUP = arg("warmup", 500);
const HTTP_USERS = process.argv.includes("--http-users");
// The retry replays winners: all of them by default, a sample of 1,000 in the all-winners storm.
const RETRY = arg("retry", ALL_WINNERS ? 1000 : Infinity);
const RATIO_TARGET = ALL_WINNERS ? 0.25 : 0.5;
const ISSUE_PATH = "/api/v1/coupons/issue";
/** Users who must get the coupon: the first QUANTITY to arrive, or every user. */
const WINNERS = Math.min(USERS, QUANTITY);
const LOSERS = USERS - WINNERS;
/** `--shards K`: run the storm on K = 1, then on K shards (undefined: the single storm of before). */
const SHARDS = process.argv.slice(2).some((a) => a === "--shards" || a.startsWith("--shards=")) ? arg("shards", 0) : undefined;
const SHARDED = SHARDS !== undefined;
/** Same bound as the admin API (src/sharding/routing.ts MAX_SHARDS). */
const MAX_SHARDS = 32;
/** The Worker isolate's sold-out memory (src/coupons/sold-out.ts), only quoted in the output. */
const SOLD_OUT_TTL_MS = 1_000;

if (ALL_WINNERS && QUANTITY < USERS) {
  console.error(`--all-winners needs --quantity >= --users (got users=${USERS} quantity=${QUANTITY})`);
  process.exit(1);
}
if (SHARDED && !(Number.isInteger(SHARDS) && SHARDS >= 1 && SHARDS <= MAX_SHARDS)) {
  console.error(`--shards needs an integer 1..${MAX_SHARDS} (got ${process.argv.slice(2).join(" ")})`);
  process.exit(1);
}

/**
 * The user's home shard: a copy of `mix32`/`homeShard` in src/sharding/routing.ts
 * (the check "every shard issued exactly the 201s of its users" fails if the two drift).
 */
/**
 * @param {number} userId
 * @param {number} shards
 */
function homeShard(userId, shards) {
  if (shards <= 1) return 0;
  let h = (userId >>> 0) ^ Math.floor(userId / 0x1_0000_0000);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return (h >>> 0) % shards;
}

const server = await openTarget();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  if (!SHARDED) {
    console.log(`\n## bench:coupons${ALL_WINNERS ? " --all-winners" : ""}  users=${USERS} quantity=${QUANTITY} connections=${CONNECTIONS}`);
    const r = await runStorm({});
    exitCode = "skipped" in r ? 2 : r.ok ? 0 : 1;
  } else {
    console.log(
      `\n## bench:coupons${ALL_WINNERS ? " --all-winners" : ""} --shards ${SHARDS}  users=${USERS} quantity=${QUANTITY} connections=${CONNECTIONS}, twice on one server: K=1, then K=${SHARDS} (fresh coupon, fresh users)`,
    );
    exitCode = await compareShards(SHARDS, "shards", {
      runStorm,
      printComparison,
      point: "The point of the local run is exactness and the per-shard spread; the capacity claim is the sim (`npm run sim:hot-coupon`).",
    });
  }
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);

/**
 * One storm: fresh users, a fresh coupon (with `k` shards when given), warm-up, the storm,
 * /health, the winners' retry, and the checks. Without `k` it is the single storm of
 * `npm run bench:coupons` and prints exactly what that always printed.
 * @param {{ k?: number }} o
 * @returns {Promise<CouponStorm | { skipped: true }>}
 */
async function runStorm({ k }) {
  const sharded = k !== undefined;
  /** @param {string} s */
  const tagged = (s) => (sharded ? `${s}, K=${k}` : s);
  /** @type {import("./lib/load.mjs").LoadRun[]} */
  const setupRows = [];
  /** @type {number[]} */
  let users;
  const seedStarted = Date.now();
  if (HTTP_USERS || server.remote) {
    const created = await createUsers(server.url, USERS, {
      connections: 50,
      ...(server.remote ? { namePrefix: `${server.tag}-user` } : {}),
    });
    users = created.ids;
    setupRows.push(created.run);
  } else {
    users = await seedUsersD1(localD1(server), USERS);
    console.log(`\nseeded ${users.length} users into D1 in ${Date.now() - seedStarted} ms`);
  }
  await prepareUserTokens(users);
  const now = Date.now();
  const coupon = await api(
    server.url,
    "POST",
    "/api/v1/admin/coupons",
    {
      name: server.remote ? `${server.tag} first-come 1,000 won` : "bench first-come 1,000 won",
      discountType: "AMOUNT",
      discountValue: 1000,
      quantity: QUANTITY,
      startsAt: isoWithOffset(now - 60_000),
      endsAt: isoWithOffset(now + 86_400_000),
      ...(sharded ? { shards: k } : {}),
    },
    { admin: true },
  );
  if (coupon.status !== 201) throw new Error(`coupon: ${coupon.status} ${JSON.stringify(coupon.json)}`);
  const couponId = coupon.json.data.couponId;

  if (!(await routeExists(server.url, ISSUE_PATH))) {
    console.log(
      `\nSKIPPED: POST ${ISSUE_PATH} is not in this build (404 NOT_FOUND). Setup worked: ${users.length} users, coupon ${couponId}.`,
    );
    return { skipped: true };
  }
  if (sharded && !(await shardView(couponId))) {
    console.log(
      `\nSKIPPED: GET /api/v1/admin/coupons/{couponId}/shards is not in this build. Setup worked: ${users.length} users, coupon ${couponId}.`,
    );
    return { skipped: true };
  }

  // Warm-up (not measured): the same request shape on a separate coupon, so the storm meets a warm
  // isolate, JIT and D1 statement cache, as production traffic does; /health below is measured warm too.
  // With --shards the warm-up coupon has the storm's K, so the K-shard storm meets warm objects too.
  const warmCoupon = await api(
    server.url,
    "POST",
    "/api/v1/admin/coupons",
    {
      name: server.remote ? `${server.tag} warm-up` : "bench warm-up",
      discountType: "AMOUNT",
      discountValue: 10,
      quantity: Math.min(WARMUP, USERS),
      startsAt: isoWithOffset(now - 60_000),
      endsAt: isoWithOffset(now + 86_400_000),
      ...(sharded ? { shards: k } : {}),
    },
    { admin: true },
  );
  if (WARMUP > 0 && warmCoupon.status === 201) {
    const warm = await load({
      url: server.url,
      path: ISSUE_PATH,
      method: "POST",
      connections: CONNECTIONS,
      amount: Math.min(WARMUP * 2, USERS),
      maxSeconds: 60,
      build: (i) => ({ body: { userId: users[i], couponId: warmCoupon.json.data.couponId }, headers: userHeaders(users[i]) }),
      label: "warm-up (separate coupon, not measured)",
    });
    await healthCeiling(server.url, { connections: CONNECTIONS, amount: 2_000, label: "warm-up /health" });
    console.log(
      `\nwarm-up: ${warm.responses} issue requests on coupon ${warmCoupon.json.data.couponId}${sharded ? ` (K=${k})` : ""} (${statusSummary(warm)}), 2,000 x /health`,
    );
  }

  // Issuance requests the coupon's shards answered before the storm (0: priming is not an issuance).
  const before = sharded ? await shardView(couponId) : undefined;

  // Phase 1: every request a distinct user.
  const winners = new Set();
  let badBodies = 0;
  const answered = new Uint8Array(USERS);
  const storm = await load({
    url: server.url,
    path: ISSUE_PATH,
    method: "POST",
    connections: CONNECTIONS,
    amount: USERS,
    maxSeconds: 110,
    timeout: 60,
    parseBodies: true,
    build: (i, ctx) => {
      ctx.i = i;
      ctx.userId = users[i];
      return { body: { userId: users[i], couponId }, headers: userHeaders(ctx.userId) };
    },
    onResponse: (status, json, ctx) => {
      answered[ctx.i] = 1;
      if (status !== 201) return;
      if (json?.data?.userId !== ctx.userId || json?.data?.couponId !== couponId) badBodies++;
      winners.add(ctx.userId);
    },
    label: `${tagged(
      ALL_WINNERS
        ? `POST /coupons/issue (all-winners storm, ${USERS} users, quantity ${QUANTITY}`
        : `POST /coupons/issue (storm, ${USERS} distinct users`,
    )})`,
  });
  // Read at once: `requests` lives in each object's memory (the retry below adds to it; an eviction resets it).
  const afterStorm = sharded ? await shardView(couponId) : undefined;
  const health = await healthCeiling(server.url, {
    connections: CONNECTIONS,
    amount: USERS,
    ...(sharded ? { label: `GET /health (ceiling, after the K=${k} storm)` } : {}),
  });

  // Phase 2: the winners again (all of them, or the first RETRY).
  const winnerList = [...winners];
  const retryList = winnerList.slice(0, RETRY);
  const retry = retryList.length
    ? await load({
        url: server.url,
        path: ISSUE_PATH,
        method: "POST",
        connections: Math.min(CONNECTIONS, retryList.length),
        amount: retryList.length,
        maxSeconds: 60,
        timeout: 30,
        build: (i) => ({ body: { userId: retryList[i], couponId }, headers: userHeaders(retryList[i]) }),
        label: `${tagged(
          `POST /coupons/issue (winners retry, ${retryList.length}${retryList.length < winnerList.length ? ` of ${winnerList.length}` : ""}`,
        )})`,
      })
    : undefined;

  printTable(sharded ? `Throughput and latency (K=${k}, same run)` : "Throughput and latency (same run)", [
    ...setupRows,
    storm,
    health,
    ...(retry ? [retry] : []),
  ]);
  if (!sharded) {
    printRatio(storm, health, { target: RATIO_TARGET, name: ALL_WINNERS ? "coupons.all-winners" : "coupons.storm" });
    printLoad();
  }

  const c = new Checks(sharded ? `Exactness and latency targets (K=${k}, coupon ${couponId})` : "Exactness and latency targets");
  // A request without an answer (timeout, socket error) has an unknown outcome: its user may
  // or may not hold the coupon. The checks allow exactly that slack and say so.
  const unknownUsers = new Set(users.filter((_, i) => !answered[i]));
  const slack = unknownUsers.size ? ` (${unknownUsers.size} unanswered requests: outcome unknown)` : "";
  const n201 = storm.statusCounts[201] ?? 0;
  const soldOut = storm.errorCodes["409 COUPON_SOLD_OUT"] ?? 0;
  c.check(
    "every request answered (no socket errors, no timeouts)",
    storm.responses === USERS && !storm.socketErrors && !storm.timeouts,
    `${storm.responses}/${USERS}`,
  );
  c.check(
    LOSERS === 0 ? `every answer is 201 (${WINNERS} winners)` : `exactly ${WINNERS} x 201`,
    unknownUsers.size ? n201 <= WINNERS : n201 === WINNERS,
    `${n201}${slack}`,
  );
  if (LOSERS === 0) {
    c.check(
      "no answer other than 201",
      Object.keys(storm.statusCounts).every((st) => st === "201"),
      `${JSON.stringify(storm.statusCounts)} ${JSON.stringify(storm.errorCodes)}`,
    );
  } else {
    c.check(
      `the other ${LOSERS} are 409 COUPON_SOLD_OUT`,
      unknownUsers.size ? n201 + soldOut + unknownUsers.size === USERS : soldOut === LOSERS,
      `${JSON.stringify(storm.errorCodes)}${slack}`,
    );
  }
  c.check("201 bodies name the requesting user and the coupon", badBodies === 0, `${badBodies} mismatches`);

  /** @type {Set<number>} */
  const holders = server.remote ? await httpCounts(c, { couponId, users, slack }) : await d1Counts(c, localD1(server), couponId);
  const missing = winnerList.filter((u) => !holders.has(u));
  const extra = [...holders].filter((u) => !winners.has(u));
  const extraKnown = extra.filter((u) => !unknownUsers.has(u));
  c.check(
    `${server.remote ? "holders (users whose GET /coupons?userId= lists the coupon)" : "D1 holders"} are exactly the users answered 201 (plus only unanswered ones)`,
    missing.length === 0 && extraKnown.length === 0,
    `${missing.length} missing, ${extra.length} extra (${extra.length - extraKnown.length} of them unanswered)${slack}`,
  );
  if (retry) {
    c.check("winners' retry issues nothing", !retry.statusCounts[201], JSON.stringify(retry.statusCounts));
    c.check(
      "winners' retry answers 409 COUPON_ALREADY_ISSUED (docs/ARCHITECTURE.md §3: duplicate checked before quantity)",
      (retry.errorCodes["409 COUPON_ALREADY_ISSUED"] ?? 0) === retryList.length,
      JSON.stringify(retry.errorCodes),
    );
  }
  // What a client sees, for a sample of winners and losers.
  const losers = users.filter((u) => !winners.has(u) && !unknownUsers.has(u));
  /** @type {[number, boolean][]} */
  const sample = [
    ...winnerList.slice(0, 20).map((u) => /** @type {[number, boolean]} */ ([u, true])),
    ...losers.slice(0, 20).map((u) => /** @type {[number, boolean]} */ ([u, false])),
  ];
  const views = await mapLimit(sample, 10, async ([u, won]) => {
    const r = await api(server.url, "GET", `/api/v1/coupons?userId=${u}`, undefined, { user: u });
    const has = (r.json?.data?.coupons ?? []).some((/** @type {{ couponId: number }} */ x) => x.couponId === couponId);
    return r.status === 200 && has === won
      ? ""
      : `user ${u} (${won ? "winner" : "loser"}): ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`;
  });
  const wrong = views.filter(Boolean);
  const nWinners = Math.min(20, winnerList.length);
  const nLosers = Math.min(20, losers.length);
  c.check(
    `GET /coupons?userId= agrees for ${nWinners} winners and ${nLosers} losers`,
    wrong.length === 0,
    wrong.length ? `${wrong.length} wrong, e.g. ${wrong[0]}` : `${views.length} users`,
  );

  let shardSummary;
  if (sharded && before && afterStorm)
    shardSummary = await shardChecks(c, { k, couponId, users, winners, unknownUsers, before, afterStorm });
  latencyChecks(c, storm, { ceiling: health });
  c.print();
  return { ok: c.ok(), k, couponId, storm, health, retry, shardSummary, checksFailed: c.failed };
}

/**
 * The local run's D1 checks (polled until stable: the objects may write behind): rows, distinct
 * users and issued_quantity of the coupon. Returns the holders.
 * @param {Checks} c
 * @param {import("./lib/fixtures.mjs").LocalD1} d1db
 * @param {number} couponId
 * @returns {Promise<Set<number>>}
 */
async function d1Counts(c, d1db, couponId) {
  const read = async () => {
    const r = await d1db.first(
      `SELECT COUNT(*) AS rows_, COUNT(DISTINCT user_id) AS users_,
              (SELECT issued_quantity FROM coupons WHERE id = ?1) AS issued
       FROM user_coupons WHERE coupon_id = ?1`,
      couponId,
    );
    return { rows: r.rows_, distinctUsers: r.users_, issuedQuantity: r.issued };
  };
  const { value: d1, stable } = await readStable(read, { interval: 500, tries: 20 });
  c.check("D1 readings stable (write-behind converged)", stable, JSON.stringify(d1));
  c.check(`D1: exactly ${WINNERS} user_coupons rows for the coupon`, d1.rows === WINNERS, `${d1.rows}`);
  c.check(`D1: ${WINNERS} distinct users`, d1.distinctUsers === WINNERS, `${d1.distinctUsers}`);
  c.check(`D1: coupons.issued_quantity = ${WINNERS}`, d1.issuedQuantity === WINNERS, `${d1.issuedQuantity}`);
  return new Set((await d1db.all("SELECT user_id AS u FROM user_coupons WHERE coupon_id = ?", couponId)).map((r) => r.u));
}

/**
 * A `--url` run's checks through the API only: the issuing objects' count (`GET /coupons/{id}`,
 * edge-cached for up to 1 s, so polled 1.5 s apart), D1's count (`GET /admin/coupons`), and every
 * user's own coupons (`GET /coupons?userId=`, one request per user). Returns the holders.
 * @param {Checks} c
 * @param {{ couponId: number, users: number[], slack: string }} o
 * @returns {Promise<Set<number>>}
 */
async function httpCounts(c, { couponId, users, slack }) {
  const read = async () => {
    const pub = await api(server.url, "GET", `/api/v1/coupons/${couponId}`);
    const row = await adminListRow(server.url, "coupons", couponId);
    return {
      issued: pub.json?.data?.issued,
      remaining: pub.json?.data?.remaining,
      quantity: pub.json?.data?.quantity,
      adminIssued: row?.issued,
      adminRemaining: row?.remaining,
    };
  };
  const { value: n, stable } = await readStable(read, { interval: 1500, tries: 20 });
  c.check("GET /coupons/{id} and GET /admin/coupons stable (write-behind converged)", stable, JSON.stringify(n));
  c.check(
    `GET /coupons/{id}: quantity ${QUANTITY}, issued ${WINNERS}, remaining ${QUANTITY - WINNERS} (the issuing objects' count)`,
    n.quantity === QUANTITY && n.issued === WINNERS && n.remaining === QUANTITY - WINNERS,
    `quantity ${n.quantity}, issued ${n.issued}, remaining ${n.remaining}${slack}`,
  );
  c.check(
    `GET /admin/coupons: issued ${WINNERS} (D1's count)`,
    n.adminIssued === WINNERS && n.adminRemaining === QUANTITY - WINNERS,
    `issued ${n.adminIssued}, remaining ${n.adminRemaining}`,
  );
  const owned = await readEach(
    server.url,
    users,
    (u) => ({ path: `/api/v1/coupons?userId=${u}`, userId: u }),
    `GET /coupons?userId= (read back ${users.length} users)`,
  );
  printTable("Read-back", [owned.run]);
  c.check(
    "every user's coupon list read back (GET /coupons?userId=, 200)",
    owned.failed === 0 && owned.data.size === users.length,
    `${owned.data.size}/${users.length} ${statusSummary(owned.run)}`,
  );
  /** @param {any} data */
  const holds = (data) => (data?.coupons ?? []).some((/** @type {{ couponId: number }} */ x) => x.couponId === couponId);
  return new Set(users.filter((_, i) => holds(owned.data.get(i))));
}

/**
 * @typedef {object} CouponShardState one shard in the admin shards view (src/admin/admin.schemas.ts CouponShardStateSchema)
 * @property {number} shard
 * @property {number} shards
 * @property {number} held
 * @property {number} issued
 * @property {number} free
 * @property {number} unsynced
 * @property {number} openTransfers
 * @property {number} requests
 * @property {number} [d1Batches]
 */
/**
 * @typedef {object} CouponShardsView
 * @property {number} couponId
 * @property {number} shards
 * @property {number} quantity
 * @property {number} issued
 * @property {number} free
 * @property {CouponShardState[]} perShard
 */
/**
 * @typedef {object} ShardSummary
 * @property {number[]} reached
 * @property {number} reachedTotal
 * @property {number[]} homed
 * @property {number[]} won
 * @property {CouponShardState[]} per
 * @property {number[]} shares
 */
/**
 * @typedef {object} CouponStorm one storm's outcome
 * @property {boolean} ok
 * @property {number | undefined} k
 * @property {number} couponId
 * @property {import("./lib/load.mjs").LoadRun} storm
 * @property {import("./lib/load.mjs").LoadRun} health
 * @property {import("./lib/load.mjs").LoadRun | undefined} retry
 * @property {ShardSummary | undefined} shardSummary
 * @property {number} checksFailed
 */

/**
 * `GET /admin/coupons/{id}/shards` data, or undefined when the route is not in the build.
 * @param {number} couponId
 * @returns {Promise<CouponShardsView | undefined>}
 */
async function shardView(couponId) {
  const r = await api(server.url, "GET", `/api/v1/admin/coupons/${couponId}/shards`, undefined, { admin: true });
  if (r.status === 404 && r.json?.error === "NOT_FOUND") return undefined;
  if (r.status !== 200) throw new Error(`shards view of coupon ${couponId}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.json.data;
}

/** @param {CouponShardsView} v */
function settledView(v) {
  return v.perShard.every((s) => s.unsynced === 0 && s.openTransfers === 0);
}

/**
 * The admin shards view after the storm (polled until every shard has unsynced = 0 and
 * openTransfers = 0), its checks, and the per-shard table: users homed there (by
 * `homeShard`), issuance requests that reached it during the storm (its `requests` right
 * after the storm minus before), its share of them against a uniform 1/K, and its units.
 * @param {Checks} c
 * @param {{ k: number, couponId: number, users: number[], winners: Set<number>, unknownUsers: Set<number>, before: CouponShardsView, afterStorm: CouponShardsView }} o
 * @returns {Promise<ShardSummary>}
 */
async function shardChecks(c, { k, couponId, users, winners, unknownUsers, before, afterStorm }) {
  /** @param {number} id */
  const mustView = async (id) => {
    const v = await shardView(id);
    if (!v) throw new Error(`no shards view of coupon ${id}`);
    return v;
  };
  let view = await mustView(couponId);
  const pollStarted = Date.now();
  for (let i = 0; i < 60 && !settledView(view); i++) {
    await new Promise((r) => setTimeout(r, 250));
    view = await mustView(couponId);
  }
  const pollMs = Date.now() - pollStarted;
  const per = [...view.perShard].sort((a, b) => a.shard - b.shard);
  const homed = new Array(k).fill(0);
  const won = new Array(k).fill(0);
  for (const u of users) homed[homeShard(u, k)]++;
  for (const u of winners) won[homeShard(u, k)]++;
  const reqBefore = new Map(before.perShard.map((s) => [s.shard, s.requests]));
  const reqAfter = new Map(afterStorm.perShard.map((s) => [s.shard, s.requests]));
  const reached = per.map((s) => (reqAfter.get(s.shard) ?? 0) - (reqBefore.get(s.shard) ?? 0));
  // D1 write batches each shard sent for the storm's wins (group commit is per object: K objects, K groups).
  const batchesBefore = new Map(before.perShard.map((s) => [s.shard, s.d1Batches ?? 0]));
  const batches = per.map((s) => (s.d1Batches ?? 0) - (batchesBefore.get(s.shard) ?? 0));
  const reachedTotal = reached.reduce((a, b) => a + b, 0);
  // An object evicted between the two reads restarts its count at 0: the difference would be negative.
  const countsReset = per.filter((s, i) => reached[i] < 0 || (reqAfter.get(s.shard) ?? 0) > s.requests).map((s) => s.shard);
  /** @param {(s: CouponShardState) => number} f */
  const sum = (f) => per.reduce((n, s) => n + f(s), 0);
  const held = sum((s) => s.held);
  const issued = sum((s) => s.issued);
  const free = sum((s) => s.free);

  console.log(`\n### Shards of coupon ${couponId} (K=${k}; admin view after the storm, settled after ${pollMs} ms of polling)\n`);
  console.log(
    "| shard | users homed | requests reached | share of requests | share / uniform (1/K) | 201s to its users | issued | held | free | unsynced | open transfers | D1 batches |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  per.forEach((s, i) => {
    const share = reachedTotal > 0 ? reached[i] / reachedTotal : NaN;
    console.log(
      `| ${s.shard} | ${fmtInt(homed[s.shard])} | ${fmtInt(reached[i])} | ${fmt(share * 100)}% | ${fmt(share * k, 2)} | ${fmtInt(won[s.shard])} | ${fmtInt(s.issued)} | ${fmtInt(s.held)} | ${fmtInt(s.free)} | ${s.unsynced} | ${s.openTransfers} | ${fmtInt(batches[i])} |`,
    );
  });
  console.log(
    `| all | ${fmtInt(users.length)} | ${fmtInt(reachedTotal)} | 100% | | ${fmtInt(winners.size)} | ${fmtInt(issued)} | ${fmtInt(held)} | ${fmtInt(free)} | ${sum((s) => s.unsynced)} | ${sum((s) => s.openTransfers)} | ${fmtInt(batches.reduce((a, b) => a + b, 0))} (${fmt(
      winners.size /
        Math.max(
          1,
          batches.reduce((a, b) => a + b, 0),
        ),
      1,
    )} wins per batch) |`,
  );
  const shares = reached.map((r) => (reachedTotal > 0 ? (r / reachedTotal) * k : NaN));
  console.log(
    `\nclient requests: ${fmtInt(USERS)}; issuance requests that reached the shard objects: ${fmtInt(reachedTotal)}; ` +
      `the other ${fmtInt(USERS - reachedTotal)} were refused by the Worker isolate itself (sold-out memory, SOLD_OUT_TTL_MS = ${SOLD_OUT_TTL_MS} ms, no object call). ` +
      `Per-shard share / uniform: min ${fmt(Math.min(...shares), 2)}, max ${fmt(Math.max(...shares), 2)}.`,
  );

  c.check(
    "shards view settled (every shard unsynced = 0 and openTransfers = 0)",
    settledView(view),
    per.map((s) => `${s.shard}: unsynced ${s.unsynced}, open ${s.openTransfers}`).join("; "),
  );
  c.check(
    `shards view: ${k} shards, each reporting shards = ${k}`,
    view.shards === k && per.length === k && per.every((s, i) => s.shard === i && s.shards === k),
    `view.shards ${view.shards}, shards ${per.map((s) => `${s.shard}/${s.shards}`).join(" ")}`,
  );
  c.check(`shards view: quantity = ${QUANTITY}`, view.quantity === QUANTITY, `${view.quantity}`);
  c.check(`shards: sum of held = quantity ${QUANTITY}`, held === QUANTITY, `${held} (${per.map((s) => s.held).join(" + ")})`);
  c.check(
    `shards: sum of issued = ${WINNERS} (and the view's issued)`,
    issued === WINNERS && view.issued === WINNERS,
    `${issued} (${per.map((s) => s.issued).join(" + ")}), view.issued ${view.issued}`,
  );
  c.check(
    `shards: free = ${QUANTITY - WINNERS} (sum and the view's free)`,
    free === QUANTITY - WINNERS && view.free === QUANTITY - WINNERS,
    `sum ${free}, view.free ${view.free}`,
  );
  const over = per.filter((s) => !(s.issued <= s.held) || s.free !== s.held - s.issued);
  c.check(
    "every shard: issued <= held, free = held - issued",
    over.length === 0,
    over.length ? over.map((s) => `shard ${s.shard}: issued ${s.issued} held ${s.held} free ${s.free}`).join("; ") : `${per.length} shards`,
  );
  const misrouted = unknownUsers.size ? [] : per.filter((s) => s.issued !== won[s.shard]);
  c.check(
    "every shard issued exactly the 201s to users homed on it (homeShard)",
    misrouted.length === 0,
    unknownUsers.size
      ? `not checked: ${unknownUsers.size} unanswered requests`
      : misrouted.length
        ? misrouted.map((s) => `shard ${s.shard}: issued ${s.issued}, 201s to its users ${won[s.shard]}`).join("; ")
        : `${per.map((s) => s.issued).join(", ")}`,
  );
  // `requests` is a load indicator, not an exactness property: a reset is reported, not failed.
  if (countsReset.length)
    console.log(
      `\nnote: the request count of shard(s) ${countsReset.join(", ")} went down between reads (object evicted and restarted): its "requests reached" is a lower bound`,
    );
  return { reached, reachedTotal, homed, won, per, shares };
}

/**
 * K = 1 and K = K side by side, the machine-readable ratio lines, and the note on this machine.
 * @param {CouponStorm[]} runs
 * @param {string} note
 */
function printComparison(runs, note) {
  const [a, b] = runs;
  const base = ALL_WINNERS ? "coupons.all-winners" : "coupons.storm";
  console.log(`\n## K=1 vs K=${b.k} (same server, same run; each storm's ratio is to the /health ceiling measured right after it)\n`);
  /** @param {CouponStorm} r */
  const hist = (r) =>
    r.storm.hops
      ? Object.entries(r.storm.hops.histogram)
          .map(([h, n]) => `${h} x ${fmtInt(n)}`)
          .join(", ")
      : "n/a";
  /** @type {[string, (r: CouponStorm) => string][]} */
  const rows = [
    ["coupon", (r) => `${r.couponId}`],
    ["storm req/s", (r) => fmtInt(r.storm.rps)],
    ["storm time s", (r) => fmt(r.storm.elapsedS)],
    ["p50 ms", (r) => fmt(r.storm.p50, 0)],
    ["p99 ms", (r) => fmt(r.storm.p99, 0)],
    ["max ms", (r) => fmt(r.storm.max, 0)],
    ["/health req/s (after the storm)", (r) => fmtInt(r.health.rps)],
    ["ratio storm / /health", (r) => fmt(r.storm.rps / r.health.rps, 3)],
    ["status counts", (r) => statusSummary(r.storm)],
    ["client requests", () => fmtInt(USERS)],
    ["requests that reached the shard objects", (r) => fmtInt(r.shardSummary?.reachedTotal)],
    ["refused by the isolate's sold-out memory", (r) => fmtInt(USERS - (r.shardSummary?.reachedTotal ?? NaN))],
    [
      "requests per shard (min / max share vs uniform)",
      (r) =>
        r.k === 1
          ? "1 shard"
          : `${fmt(Math.min(...(r.shardSummary?.shares ?? [])), 2)} / ${fmt(Math.max(...(r.shardSummary?.shares ?? [])), 2)}`,
    ],
    ["hops: responses", hist],
    ["mean hops", (r) => fmt(r.storm.hops?.mean, 2)],
    [
      "do calls/resp (+nested)",
      (r) => `${fmt(r.storm.timing.metrics.do.callsPerResponse, 2)} (+${fmt(r.storm.timing.metrics.do.nestedPerResponse, 2)})`,
    ],
    ["checks", (r) => (r.ok ? "ALL PASSED" : `${r.checksFailed} FAILED`)],
  ];
  console.log(`| | K=1 | K=${b.k} |`);
  console.log("|---|---:|---:|");
  for (const [name, f] of rows) console.log(`| ${name} | ${f(a)} | ${f(b)} |`);
  printRatio(a.storm, a.health, { target: RATIO_TARGET, name: `${base}.k1` });
  // `--shards 1` (a control: is the second storm slower only for being second?) must not print two lines of one name.
  printRatio(b.storm, b.health, { target: RATIO_TARGET, name: `${base}.k${b.k}${b.k === 1 ? "-second" : ""}` });
  console.log(`\n${note}`);
  printLoad();
  printVerdict(runs);
}
