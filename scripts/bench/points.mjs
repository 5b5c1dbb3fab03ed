#!/usr/bin/env node
/**
 * `npm run bench:points`: a storm of `POST /api/v1/points/charge` on many users at once,
 * plus one hot user close to the 5,000,000 balance cap (so some charges must be refused
 * with 409 BALANCE_LIMIT_EXCEEDED), then an exactness check read back from D1:
 *   - every user's balance == initial + the sum of that user's 200-answered amounts
 *   - sum of balances == sum of initial balances + sum of the 200s' amounts
 *   - CHARGE history rows == rows from initial balances + number of 200s
 *   - no balance above the cap
 * and the same-run `/health` ceiling with the same connections and request count (target:
 * 0.3 of it), and the storm's latency targets (p99 <= 5 x p50, max < 5,000 ms).
 *
 * `--idempotency-keys` (`npm run bench:points:keyed`): every charge carries its own
 * `Idempotency-Key` (unique per request), the keyed hot path: claim, handler, stored
 * response. The same exactness checks apply, plus: D1 holds one completed key per request
 * with the answered status, no storm answer is a replay, and a replay of `--replays` (500)
 * requests spread over the storm, same key and body, answers each one's stored status with
 * `Idempotent-Replayed: true` and changes no balance or history row.
 *
 * Options: --users 1000 --requests 5000 --connections 300 --seed 42 --idempotency-keys --replays 500
 *
 * A request that got no answer (socket error, timeout, hard stop) has an unknown outcome;
 * the checks then allow exactly that slack and say so (they are exact when every request
 * was answered, which is the normal case).
 */
import { startServer } from "./server.mjs";
import { arg, exitWithHelpIfAsked } from "./lib/args.mjs";
import { api } from "./lib/http.mjs";
import { printLoad, printMachine } from "./lib/machine.mjs";
import { headerValue } from "./lib/server-timing.mjs";
import { healthCeiling, load } from "./lib/load.mjs";
import { printD1Writes, printRatio, printTable } from "./lib/report.mjs";
import { Checks, latencyChecks } from "./lib/checks.mjs";
import { createUsers, rng } from "./lib/fixtures.mjs";

exitWithHelpIfAsked(import.meta.url);

const USERS = arg("users", 1000);
const REQUESTS = arg("requests", 5000);
const CONNECTIONS = arg("connections", 300);
const SEED = arg("seed", 42);
const HOT_INITIAL = 4_950_000; // 50 charges of 1,000 fit, the rest crosses 5,000,000
const HOT_EVERY = 10; // every 10th request goes to the hot user
const MAX_BALANCE = 5_000_000;
const KEYED = process.argv.includes("--idempotency-keys");
const REPLAYS = KEYED ? Math.min(arg("replays", 500), REQUESTS) : 0;
// Unique per request and per run (keys are per user in D1, and a run's state is fresh anyway).
const KEY_PREFIX = `bench-${process.pid}-${Date.now()}`;
/** @param {number} i */
const keyOf = (i) => `${KEY_PREFIX}-${i}`;

const server = await startServer();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  console.log(
    `\n## bench:points${KEYED ? " --idempotency-keys" : ""}  users=${USERS} requests=${REQUESTS} connections=${CONNECTIONS} seed=${SEED}${KEYED ? ` replays=${REPLAYS}` : ""}`,
  );

  const { ids: users, run: setup } = await createUsers(server.url, USERS, { connections: 50 });
  const hot = await api(server.url, "POST", "/api/v1/admin/users", { name: "bench-hot", initialBalance: HOT_INITIAL }, { admin: true });
  if (hot.status !== 201) throw new Error(`hot user: ${hot.status} ${JSON.stringify(hot.json)}`);
  const hotUser = hot.json.data.userId;
  const initial = new Map(users.map((u) => [u, 0]));
  initial.set(hotUser, HOT_INITIAL);

  // The request mix is fixed by the seed: request i -> (user, amount).
  const random = rng(SEED);
  const plan = Array.from({ length: REQUESTS }, (_, i) =>
    i % HOT_EVERY === 0
      ? { userId: hotUser, amount: 1000 }
      : { userId: users[Math.floor(random() * users.length)], amount: 1 + Math.floor(random() * 1000) },
  );

  /** @type {Map<number, number>} userId -> sum of amounts answered 200 */
  const credited = new Map();
  const answered = new Uint8Array(REQUESTS); // 1 once request i got any HTTP answer
  const statusOf = new Uint16Array(REQUESTS); // the storm's answer per request (0: none)
  let replayedInStorm = 0;
  let ok200 = 0;
  let okAmount = 0;
  const storm = await load({
    url: server.url,
    path: "/api/v1/points/charge",
    method: "POST",
    connections: CONNECTIONS,
    amount: REQUESTS,
    maxSeconds: 100,
    timeout: 30,
    build: (i, ctx) => {
      const p = plan[i];
      ctx.p = p;
      ctx.i = i;
      return KEYED ? { body: p, headers: { "Idempotency-Key": keyOf(i) } } : { body: p };
    },
    onResponse: (status, _json, ctx, headers) => {
      answered[ctx.i] = 1;
      statusOf[ctx.i] = status;
      if (KEYED && headerValue(headers, "idempotent-replayed") === "true") replayedInStorm++;
      if (status !== 200) return;
      ok200++;
      okAmount += ctx.p.amount;
      credited.set(ctx.p.userId, (credited.get(ctx.p.userId) ?? 0) + ctx.p.amount);
    },
    label: KEYED ? "POST /points/charge (storm, Idempotency-Key per request)" : "POST /points/charge (storm)",
  });
  const health = await healthCeiling(server.url, { connections: CONNECTIONS, amount: REQUESTS });

  // Keyed: replay REPLAYS requests spread over the storm (so refused hot-user charges are
  // among them) with the same key and body: nothing may change.
  const replayIdx = Array.from({ length: REPLAYS }, (_, k) => Math.floor((k * REQUESTS) / REPLAYS));
  let replay;
  let beforeReplay;
  /** @type {string[]} */
  const replayWrong = [];
  let replayFlagged = 0;
  if (REPLAYS > 0) {
    beforeReplay = await server.d1.first(
      "SELECT (SELECT COALESCE(SUM(balance), 0) FROM user_balances) AS total, (SELECT COUNT(*) FROM point_history) AS history",
    );
    replay = await load({
      url: server.url,
      path: "/api/v1/points/charge",
      method: "POST",
      connections: Math.min(CONNECTIONS, REPLAYS),
      amount: REPLAYS,
      maxSeconds: 60,
      timeout: 30,
      build: (k, ctx) => {
        const i = replayIdx[k];
        ctx.i = i;
        return { body: plan[i], headers: { "Idempotency-Key": keyOf(i) } };
      },
      onResponse: (status, _json, ctx, headers) => {
        if (headerValue(headers, "idempotent-replayed") === "true") replayFlagged++;
        if (status !== statusOf[ctx.i]) replayWrong.push(`request ${ctx.i}: ${statusOf[ctx.i]} then ${status}`);
      },
      label: `POST /points/charge (replay of ${REPLAYS}, same keys and bodies)`,
    });
  }
  printTable("Throughput and latency (same run, same connections and request count)", [setup, storm, health, ...(replay ? [replay] : [])]);
  printRatio(storm, health, { target: 0.3, name: KEYED ? "points.charge-keyed" : "points.charge" });
  printD1Writes(storm, KEYED ? "points.charge-keyed" : "points.charge");
  printLoad();

  // Exactness, read back from D1.
  const c = new Checks("Exactness (read back from D1)");
  const allUsers = [...initial.keys()];
  const rows = await server.d1.all("SELECT user_id AS userId, balance FROM user_balances");
  const balance = new Map(rows.map((r) => [r.userId, r.balance]));
  // Requests without an answer may or may not have been applied: that is the only slack.
  /** @type {Map<number, number>} userId -> sum of unanswered amounts */
  const unknown = new Map();
  let unknownCount = 0;
  let unknownAmount = 0;
  for (let i = 0; i < storm.built; i++) {
    if (answered[i]) continue;
    unknownCount++;
    unknownAmount += plan[i].amount;
    unknown.set(plan[i].userId, (unknown.get(plan[i].userId) ?? 0) + plan[i].amount);
  }
  const slack = unknownCount ? ` (${unknownCount} unanswered requests allow up to ${unknownAmount} more)` : "";
  /**
   * @param {number} actual
   * @param {number} expected
   * @param {number} extra
   */
  const within = (actual, expected, extra) => actual >= expected && actual <= expected + extra;
  // Every user in allUsers has an initial balance; a user D1 lacks has no balance (NaN: never within, never equal).
  /** @param {number} u */
  const initialOf = (u) => initial.get(u) ?? NaN;
  const mismatches = allUsers.filter((u) => {
    const expected = initialOf(u) + (credited.get(u) ?? 0);
    return unknown.has(u) ? !within(balance.get(u) ?? NaN, expected, unknown.get(u) ?? 0) : balance.get(u) !== expected;
  });
  c.check(
    "every user's balance == initial + sum of its 200-answered charges",
    mismatches.length === 0,
    mismatches.length
      ? `${mismatches.length} users differ, e.g. user ${mismatches[0]}: ${balance.get(mismatches[0])} != ${initialOf(mismatches[0]) + (credited.get(mismatches[0]) ?? 0)}`
      : `${allUsers.length} users${slack}`,
  );
  const sumInitial = allUsers.reduce((s, u) => s + initialOf(u), 0);
  const { total } = await server.d1.first("SELECT COALESCE(SUM(balance), 0) AS total FROM user_balances");
  c.check(
    "sum of balances == initial + sum of 200s' amounts",
    within(total, sumInitial + okAmount, unknownAmount),
    `${total} vs ${sumInitial} + ${okAmount}${slack}`,
  );
  const { n: history } = await server.d1.first("SELECT COUNT(*) AS n FROM point_history WHERE type = 'CHARGE'");
  const initialRows = allUsers.filter((u) => initialOf(u) > 0).length;
  c.check(
    "CHARGE history rows == initial-balance rows + 200s",
    within(history, initialRows + ok200, unknownCount),
    `${history} vs ${initialRows} + ${ok200}${slack}`,
  );
  const { m: maxBalance } = await server.d1.first("SELECT MAX(balance) AS m FROM user_balances");
  c.check("no balance above 5,000,000", maxBalance <= MAX_BALANCE, `max ${maxBalance}`);
  const hotSent = plan.filter((p, i) => p.userId === hotUser && i < storm.built).length;
  c.check(
    "hot user: exactly 50 of its charges accepted (balance reaches the cap), the rest 409 BALANCE_LIMIT_EXCEEDED",
    unknownCount > 0 || (credited.get(hotUser) === 50_000 && (storm.errorCodes["409 BALANCE_LIMIT_EXCEEDED"] ?? 0) === hotSent - 50),
    `${(credited.get(hotUser) ?? 0) / 1000} accepted of ${hotSent}; balance ${balance.get(hotUser)}${slack}`,
  );
  const unexpected = Object.entries(storm.statusCounts).filter(([s]) => s !== "200" && s !== "409");
  c.check(
    "only 200 and 409 answers, no socket errors or timeouts",
    unexpected.length === 0 && !storm.socketErrors && !storm.timeouts,
    unexpected.map(([s, n]) => `${s} x ${n}`).join(", "),
  );
  c.check("every request answered", storm.responses === REQUESTS, `${storm.responses}/${REQUESTS}`);
  // Spot check through the API (what a client sees).
  const probe = await api(server.url, "GET", `/api/v1/points?userId=${hotUser}`);
  c.check(
    "GET /points agrees with D1 for the hot user",
    probe.json?.data?.balance === balance.get(hotUser),
    `${probe.json?.data?.balance}`,
  );
  if (KEYED) {
    // One claimed, completed key per request, holding the status its request was answered.
    const keys = await server.d1.all(
      "SELECT COALESCE(status_code, 0) AS status, COUNT(*) AS n FROM idempotency_keys WHERE key LIKE ?1 || '-%' GROUP BY 1",
      KEY_PREFIX,
    );
    const stored = Object.fromEntries(keys.map((r) => [r.status, r.n]));
    /** @type {Record<number, number>} */
    const answeredByStatus = {};
    for (let i = 0; i < REQUESTS; i++) if (statusOf[i]) answeredByStatus[statusOf[i]] = (answeredByStatus[statusOf[i]] ?? 0) + 1;
    const fiveXX = Object.entries(answeredByStatus).filter(([st]) => Number(st) >= 500);
    c.check(
      "D1 idempotency_keys: one completed key per answered request, with its status",
      unknownCount > 0 || fiveXX.length > 0
        ? Object.entries(answeredByStatus).every(([st, n]) => Number(st) >= 500 || stored[st] === n)
        : JSON.stringify(stored) === JSON.stringify(answeredByStatus),
      `stored ${JSON.stringify(stored)} vs answered ${JSON.stringify(answeredByStatus)}${slack}`,
    );
    c.check("no storm answer was a replay (every key unique)", replayedInStorm === 0, `${replayedInStorm} replayed`);
    if (replay) {
      c.check(
        `replay of ${REPLAYS}: every answer has the original status and Idempotent-Replayed: true`,
        replay.responses === REPLAYS && replayWrong.length === 0 && replayFlagged === REPLAYS,
        `${replay.responses}/${REPLAYS} answered, ${replayFlagged} flagged replayed, ${replayWrong.length} with another status${replayWrong.length ? ` (e.g. ${replayWrong[0]})` : ""}`,
      );
      const after = await server.d1.first(
        "SELECT (SELECT COALESCE(SUM(balance), 0) FROM user_balances) AS total, (SELECT COUNT(*) FROM point_history) AS history",
      );
      c.check(
        "replay changed no balance and wrote no history row",
        after.total === beforeReplay.total && after.history === beforeReplay.history,
        `sum ${beforeReplay.total} -> ${after.total}, history rows ${beforeReplay.history} -> ${after.history}`,
      );
    }
  }
  latencyChecks(c, storm, { ceiling: health });
  c.print();
  exitCode = c.ok() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
