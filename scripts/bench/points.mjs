#!/usr/bin/env node
/**
 * `npm run bench:points`: a storm of `POST /api/v1/points/charge` on many users at once,
 * plus one hot user close to the 5,000,000 balance cap (so some charges must be refused
 * with 409 BALANCE_LIMIT_EXCEEDED), then an exactness check read back from D1:
 *   - every user's balance == initial + the sum of that user's 200-answered amounts
 *   - sum of balances == sum of initial balances + sum of the 200s' amounts
 *   - CHARGE history rows == rows from initial balances + number of 200s
 *   - no balance above the cap
 * and the same-run `/health` ceiling with the same connections and request count.
 *
 * Options: --users 1000 --requests 5000 --connections 200 --seed 42
 *
 * A request that got no answer (socket error, timeout, hard stop) has an unknown outcome;
 * the checks then allow exactly that slack and say so (they are exact when every request
 * was answered, which is the normal case).
 */
import { startServer } from "./server.mjs";
import { Checks, api, arg, createUsers, healthCeiling, load, printLoad, printMachine, printRatio, printTable, rng } from "./lib.mjs";

const USERS = arg("users", 1000);
const REQUESTS = arg("requests", 5000);
const CONNECTIONS = arg("connections", 200);
const SEED = arg("seed", 42);
const HOT_INITIAL = 4_950_000; // 50 charges of 1,000 fit, the rest crosses 5,000,000
const HOT_EVERY = 10; // every 10th request goes to the hot user
const MAX_BALANCE = 5_000_000;

const server = await startServer();
let exitCode = 1;
try {
  printMachine({ server: server.mode });
  console.log(`\n## bench:points  users=${USERS} requests=${REQUESTS} connections=${CONNECTIONS} seed=${SEED}`);

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

  const credited = new Map(); // userId -> sum of amounts answered 200
  const answered = new Uint8Array(REQUESTS); // 1 once request i got any HTTP answer
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
      return { body: p };
    },
    onResponse: (status, _json, ctx) => {
      answered[ctx.i] = 1;
      if (status !== 200) return;
      ok200++;
      okAmount += ctx.p.amount;
      credited.set(ctx.p.userId, (credited.get(ctx.p.userId) ?? 0) + ctx.p.amount);
    },
    label: "POST /points/charge (storm)",
  });
  const health = await healthCeiling(server.url, { connections: CONNECTIONS, amount: REQUESTS });
  printTable("Throughput and latency (same run, same connections and request count)", [setup, storm, health]);
  printRatio(storm, health);
  printLoad();

  // Exactness, read back from D1.
  const c = new Checks("Exactness (read back from D1)");
  const allUsers = [...initial.keys()];
  const rows = await server.d1.all("SELECT user_id AS userId, balance FROM user_balances");
  const balance = new Map(rows.map((r) => [r.userId, r.balance]));
  // Requests without an answer may or may not have been applied: that is the only slack.
  const unknown = new Map(); // userId -> sum of unanswered amounts
  let unknownCount = 0;
  let unknownAmount = 0;
  for (let i = 0; i < storm.built; i++) {
    if (answered[i]) continue;
    unknownCount++;
    unknownAmount += plan[i].amount;
    unknown.set(plan[i].userId, (unknown.get(plan[i].userId) ?? 0) + plan[i].amount);
  }
  const slack = unknownCount ? ` (${unknownCount} unanswered requests allow up to ${unknownAmount} more)` : "";
  const within = (actual, expected, extra) => actual >= expected && actual <= expected + extra;
  const mismatches = allUsers.filter((u) => {
    const expected = initial.get(u) + (credited.get(u) ?? 0);
    return unknown.has(u) ? !within(balance.get(u), expected, unknown.get(u)) : balance.get(u) !== expected;
  });
  c.check(
    "every user's balance == initial + sum of its 200-answered charges",
    mismatches.length === 0,
    mismatches.length
      ? `${mismatches.length} users differ, e.g. user ${mismatches[0]}: ${balance.get(mismatches[0])} != ${initial.get(mismatches[0]) + (credited.get(mismatches[0]) ?? 0)}`
      : `${allUsers.length} users${slack}`,
  );
  const sumInitial = allUsers.reduce((s, u) => s + initial.get(u), 0);
  const { total } = await server.d1.first("SELECT COALESCE(SUM(balance), 0) AS total FROM user_balances");
  c.check("sum of balances == initial + sum of 200s' amounts", within(total, sumInitial + okAmount, unknownAmount), `${total} vs ${sumInitial} + ${okAmount}${slack}`);
  const { n: history } = await server.d1.first("SELECT COUNT(*) AS n FROM point_history WHERE type = 'CHARGE'");
  const initialRows = allUsers.filter((u) => initial.get(u) > 0).length;
  c.check("CHARGE history rows == initial-balance rows + 200s", within(history, initialRows + ok200, unknownCount), `${history} vs ${initialRows} + ${ok200}${slack}`);
  const { m: maxBalance } = await server.d1.first("SELECT MAX(balance) AS m FROM user_balances");
  c.check("no balance above 5,000,000", maxBalance <= MAX_BALANCE, `max ${maxBalance}`);
  const hotSent = plan.filter((p, i) => p.userId === hotUser && i < storm.built).length;
  c.check(
    "hot user: exactly 50 of its charges accepted (balance reaches the cap), the rest 409 BALANCE_LIMIT_EXCEEDED",
    unknownCount > 0 || (credited.get(hotUser) === 50_000 && (storm.errorCodes["409 BALANCE_LIMIT_EXCEEDED"] ?? 0) === hotSent - 50),
    `${(credited.get(hotUser) ?? 0) / 1000} accepted of ${hotSent}; balance ${balance.get(hotUser)}${slack}`,
  );
  const unexpected = Object.entries(storm.statusCounts).filter(([s]) => s !== "200" && s !== "409");
  c.check("only 200 and 409 answers, no socket errors or timeouts", unexpected.length === 0 && !storm.socketErrors && !storm.timeouts, unexpected.map(([s, n]) => `${s} x ${n}`).join(", "));
  c.check("every request answered", storm.responses === REQUESTS, `${storm.responses}/${REQUESTS}`);
  // Spot check through the API (what a client sees).
  const probe = await api(server.url, "GET", `/api/v1/points?userId=${hotUser}`);
  c.check("GET /points agrees with D1 for the hot user", probe.json?.data?.balance === balance.get(hotUser), `${probe.json?.data?.balance}`);
  c.print();
  exitCode = c.ok() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await server.stop();
}
process.exit(exitCode);
