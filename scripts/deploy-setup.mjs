#!/usr/bin/env node
// @ts-check
/**
 * `npm run deploy:setup -- --env staging|production [--dry-run]` (docs/DEPLOY.md): creates, on
 * the Cloudflare account wrangler is logged in to, everything `wrangler deploy --env X` needs,
 * and is safe to run again (each step checks first and skips what exists):
 *
 *   1. the D1 database, with `--location` = the environment's DO_LOCATION_HINT (objects and
 *      database primary in one region); its id is written into wrangler.toml's [env.X] section
 *      (commit it: a D1 id is not a secret);
 *   2. its remote migrations (`wrangler d1 migrations apply DB --remote`, which applies only new ones);
 *   3. D1 read replication ("auto"; no wrangler command does it: the REST API, with wrangler's own token);
 *   4. both queues, with a message retention that covers the dead-letter consumer's retry schedule
 *      (checked here against wrangler.toml's max_retries and src/events/consumer.ts' delays);
 *   5. the secrets the Worker refuses to serve without (JWT_SECRET, ADMIN_TOKEN): `wrangler secret put`
 *      asks for each one `wrangler secret list` does not show.
 *
 * `--dry-run` runs nothing (no network, no file written): it checks the configuration and prints
 * every command in order, with the condition under which each would run. CI runs it (.ci/run).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CONFIG_PATH = join(ROOT, "wrangler.toml");

/** The Queues maximum (Workers Paid): 14 days. A free-plan account is capped at 1 day and is refused by `queues create`. */
const RETENTION_SECONDS = 14 * 86_400;
/** Secrets without which a deployed environment answers 503 MISCONFIGURED (src/config.ts). */
const REQUIRED_SECRETS = ["JWT_SECRET", "ADMIN_TOKEN"];
/** `wrangler d1 create --location` choices; a DO hint outside them maps to the D1 region containing it. */
const D1_LOCATIONS = {
  wnam: "wnam",
  enam: "enam",
  weur: "weur",
  eeur: "eeur",
  apac: "apac",
  "apac-ne": "apac",
  "apac-se": "apac",
  oc: "oc",
};
const PLACEHOLDER_ID = /^0{8}-0{4}-0{4}-0{4}-0{12}$/;

/**
 * @typedef {{ env: string, dryRun: boolean }} Options
 * @typedef {{ queue: string, max_retries?: number, max_batch_timeout?: number, dead_letter_queue?: string }} Consumer
 * @typedef {{
 *   name: string, database: string, databaseId: string | undefined, location: string | undefined,
 *   eventsQueue: string, deadLetterQueue: string, deadLetterRetries: number, eventRetries: number,
 *   placeholderRoutes: string[], workersDev: boolean
 * }} Plan
 */

/** @param {string[]} argv @returns {Options} */
function parseArgs(argv) {
  let env = "";
  let dryRun = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--dry-run") dryRun = true;
    else if (a === "--env" || a === "-e") env = argv[++i] ?? "";
    else if (a?.startsWith("--env=")) env = a.slice("--env=".length);
    else fail(`unknown argument ${a}\nusage: npm run deploy:setup -- --env staging|production [--dry-run]`);
  }
  if (!env) fail("usage: npm run deploy:setup -- --env staging|production [--dry-run]");
  return { env, dryRun };
}

/** @param {string} message @returns {never} */
function fail(message) {
  console.error(`deploy:setup: ${message}`);
  process.exit(1);
}

// ---- delays of src/events/consumer.ts (keep in step with retryDelaySeconds / deadLetterRetrySeconds) ----

/** Seconds a message of the events queue can spend in retries: base 2 s doubling, at most 60 s each. @param {number} retries */
function eventRetrySpan(retries) {
  let sum = 0;
  for (let a = 1; a <= retries; a++) sum += Math.min(2 * 2 ** (a - 1), 60);
  return sum;
}

/** Seconds a dead letter can spend in retries while D1 refuses it: 30 s doubling, at most 12 h each. @param {number} retries */
function deadLetterRetrySpan(retries) {
  let sum = 0;
  for (let a = 1; a <= retries; a++) sum += Math.min(30 * 2 ** (a - 1), 43_200);
  return sum;
}

// ---- the environment, read offline through wrangler's own reader ----

/**
 * Wrangler does not inherit bindings or vars into [env.X]: a binding added at the top level and
 * not repeated in the environment would deploy a Worker without it. Names per binding type.
 * @param {any} cfg
 */
function bindingNames(cfg) {
  /** @param {any[] | undefined} list @param {string} key */
  const names = (list, key) => (list ?? []).map((b) => b[key]).sort();
  return {
    vars: Object.keys(cfg.vars ?? {}).sort(),
    d1_databases: names(cfg.d1_databases, "binding"),
    durable_objects: names(cfg.durable_objects?.bindings, "name"),
    "queues.producers": names(cfg.queues?.producers, "binding"),
    "queues.consumers": (cfg.queues?.consumers ?? []).length,
    kv_namespaces: names(cfg.kv_namespaces, "binding"),
    r2_buckets: names(cfg.r2_buckets, "binding"),
    services: names(cfg.services, "binding"),
    ratelimits: names(cfg.ratelimits, "name"),
    analytics_engine_datasets: names(cfg.analytics_engine_datasets, "binding"),
  };
}

/** @param {string} env @returns {Promise<Plan>} */
async function readPlan(env) {
  const { unstable_readConfig } = await import("wrangler");
  const top = unstable_readConfig({ config: CONFIG_PATH });
  const known = Object.keys(/** @type {any} */ (top).env ?? {});
  const raw = readFileSync(CONFIG_PATH, "utf8");
  if (!new RegExp(`^\\[env\\.${env}\\]`, "m").test(raw))
    fail(`wrangler.toml has no [env.${env}] (environments: ${known.join(", ") || "staging, production"})`);
  const cfg = /** @type {any} */ (unstable_readConfig({ config: CONFIG_PATH, env }));

  const problems = [];
  const want = bindingNames(top);
  const have = bindingNames(cfg);
  for (const [kind, names] of Object.entries(want)) {
    const got = /** @type {any} */ (have)[kind];
    if (typeof names === "number") {
      if (got !== names) problems.push(`[env.${env}] has ${got} ${kind}, the top level ${names} (bindings are not inherited)`);
      continue;
    }
    const missing = names.filter((/** @type {string} */ n) => !got.includes(n));
    if (missing.length > 0)
      problems.push(
        `[env.${env}] lacks ${kind} ${missing.join(", ")} (bindings and vars are not inherited: repeat them in the environment)`,
      );
  }
  if (cfg.vars?.ENVIRONMENT === undefined || cfg.vars.ENVIRONMENT === "development")
    problems.push(`[env.${env}.vars] must set ENVIRONMENT (not "development": that runs without secrets)`);

  const db = cfg.d1_databases?.find((/** @type {any} */ d) => d.binding === "DB");
  if (!db?.database_name) problems.push(`[env.${env}] has no D1 binding DB with a database_name`);
  const consumers = /** @type {Consumer[]} */ (cfg.queues?.consumers ?? []);
  const events = consumers.find((c) => c.dead_letter_queue);
  const dlq = events && consumers.find((c) => c.queue === events.dead_letter_queue);
  if (!events || !dlq)
    problems.push(`[env.${env}] needs the events consumer (with dead_letter_queue) and a consumer of that dead-letter queue`);
  const producer = cfg.queues?.producers?.find((/** @type {any} */ p) => p.binding === "EVENTS_QUEUE");
  if (events && producer?.queue !== events.queue)
    problems.push(`[env.${env}] EVENTS_QUEUE produces to ${producer?.queue}, but the consumer reads ${events.queue}`);

  const hint = cfg.vars?.DO_LOCATION_HINT;
  const location = hint === undefined ? undefined : /** @type {Record<string, string>} */ (D1_LOCATIONS)[hint];
  if (hint !== undefined && location === undefined)
    problems.push(`DO_LOCATION_HINT "${hint}" has no D1 location (use one of ${Object.keys(D1_LOCATIONS).join(", ")})`);

  const deadLetterRetries = dlq?.max_retries ?? 3;
  const eventRetries = events?.max_retries ?? 3;
  // Each retry also waits up to a batch timeout before it is delivered.
  const dlqSpan = deadLetterRetrySpan(deadLetterRetries) + deadLetterRetries * (dlq?.max_batch_timeout ?? 5);
  if (dlqSpan >= RETENTION_SECONDS) {
    problems.push(
      `the dead-letter consumer's ${deadLetterRetries} retries span ${(dlqSpan / 86_400).toFixed(1)} days, beyond the ${RETENTION_SECONDS / 86_400}-day queue retention: lower its max_retries`,
    );
  }
  if (problems.length > 0) fail(`wrangler.toml is not ready for --env ${env}:\n  - ${problems.join("\n  - ")}`);

  const placeholderRoutes = (cfg.routes ?? [])
    .map((/** @type {any} */ r) => (typeof r === "string" ? r : r.pattern))
    .filter((/** @type {string} */ p) => /(^|\.)example\.(com|org|net)(\/|$)/.test(p));
  return {
    name: cfg.name,
    database: db.database_name,
    databaseId: db.database_id && !PLACEHOLDER_ID.test(db.database_id) ? db.database_id : undefined,
    location,
    eventsQueue: /** @type {Consumer} */ (events).queue,
    deadLetterQueue: /** @type {Consumer} */ (dlq).queue,
    deadLetterRetries,
    eventRetries,
    placeholderRoutes,
    workersDev: cfg.workers_dev !== false,
  };
}

// ---- running wrangler ----

const offline = { ...process.env, WRANGLER_SEND_METRICS: "false" };

/** Prints a command as the operator would type it. @param {string[]} args @param {string} [why] */
function show(args, why) {
  const line = `  $ npx wrangler ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(" ")}`;
  console.log(why ? `${line.padEnd(96)} # ${why}` : line);
}

/**
 * Runs wrangler and returns its stdout (null when it exited non-zero and `mayFail`).
 * @param {string[]} args @param {{ mayFail?: boolean, interactive?: boolean }} [opts]
 * @returns {string | null}
 */
function wrangler(args, opts = {}) {
  show(args);
  if (opts.interactive) {
    const r = spawnSync("npx", ["wrangler", ...args], { cwd: ROOT, stdio: "inherit", env: offline });
    if (r.status !== 0) fail(`npx wrangler ${args.join(" ")} exited ${r.status}`);
    return "";
  }
  try {
    return execFileSync("npx", ["wrangler", ...args], { cwd: ROOT, env: offline, encoding: "utf8", stdio: ["inherit", "pipe", "pipe"] });
  } catch (err) {
    if (opts.mayFail) return null;
    const e = /** @type {{ stderr?: string, stdout?: string }} */ (err);
    fail(`npx wrangler ${args.join(" ")} failed:\n${e.stderr || e.stdout || String(err)}`);
  }
}

/** Parses the JSON a `--json` wrangler command printed (it may print a banner first). @param {string} text */
function parseJson(text) {
  const start = text.search(/^[[{]/m);
  return JSON.parse(start >= 0 ? text.slice(start) : text);
}

// ---- wrangler.toml ----

/**
 * Writes `id` as the database_id of [[env.<env>.d1_databases]] (true when written).
 * @param {string} env @param {string} id
 */
function writeDatabaseId(env, id) {
  const text = readFileSync(CONFIG_PATH, "utf8");
  const header = `[[env.${env}.d1_databases]]`;
  const at = text.indexOf(header);
  if (at < 0) return false;
  const end = text.slice(at + header.length).search(/^\[/m);
  const sectionEnd = end < 0 ? text.length : at + header.length + end;
  const section = text.slice(at, sectionEnd);
  const next = section.replace(/^database_id\s*=\s*"[^"]*"/m, `database_id = "${id}"`);
  if (next === section) return false;
  writeFileSync(CONFIG_PATH, text.slice(0, at) + next + text.slice(sectionEnd));
  return true;
}

// ---- the steps ----

/** @param {Plan} plan @param {Options} opts */
function printDryRun(plan, opts) {
  const env = opts.env;
  const loc = plan.location ? ["--location", plan.location] : [];
  const retention = ["--message-retention-period-secs", String(RETENTION_SECONDS)];
  console.log("\n1. D1 database");
  show(["d1", "list", "--json"], `is "${plan.database}" there? then skip the create`);
  show(["d1", "create", plan.database, ...loc], "only if missing");
  console.log(
    `     then its uuid (from d1 list --json) is written into wrangler.toml [[env.${env}.d1_databases]] database_id${plan.databaseId ? ` (now ${plan.databaseId})` : " (now the placeholder)"}`,
  );
  console.log("\n2. Remote migrations (applies only those not yet applied)");
  show(["d1", "migrations", "apply", "DB", "--remote", "--env", env]);
  console.log("\n3. Read replication");
  show(["d1", "info", plan.database, "--json"], 'read_replication.mode already "auto"? then skip');
  show(["auth", "token", "--json"], "wrangler's own credentials, for the REST call below");
  show(["whoami", "--json"], "the account id, unless CLOUDFLARE_ACCOUNT_ID is set");
  console.log(
    `  $ curl -X PUT https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database/<uuid> \\\n` +
      `      -H "Authorization: Bearer <token>" -H "Content-Type: application/json" -d '{"read_replication":{"mode":"auto"}}'`,
  );
  console.log("\n4. Queues (retention 14 days: the Queues maximum, covers the retry schedules)");
  for (const q of [plan.eventsQueue, plan.deadLetterQueue]) {
    show(["queues", "info", q], "exists? then update, else create");
    show(["queues", "update", q, ...retention], "if it exists");
    show(["queues", "create", q, ...retention], "if it does not");
  }
  console.log("\n5. Secrets");
  show(["secret", "list", "--env", env, "--format", "json"], "which are set (fails before the first deploy: then none are)");
  for (const s of REQUIRED_SECRETS) show(["secret", "put", s, "--env", env], "only if missing; asks for the value");
}

/** @param {Plan} plan @param {Options} opts */
async function run(plan, opts) {
  const env = opts.env;
  console.log("\n1. D1 database");
  /** @type {(name: string) => { uuid: string } | undefined} */
  const findDb = (name) =>
    /** @type {{ name: string, uuid: string }[]} */ (parseJson(wrangler(["d1", "list", "--json"]) ?? "[]")).find((d) => d.name === name);
  let db = findDb(plan.database);
  if (db) console.log(`   exists: ${plan.database} (${db.uuid})`);
  else {
    wrangler(["d1", "create", plan.database, ...(plan.location ? ["--location", plan.location] : [])]);
    db = findDb(plan.database);
    if (!db) fail(`created ${plan.database} but d1 list does not show it yet; run deploy:setup again`);
  }
  if (plan.databaseId !== db.uuid) {
    if (plan.databaseId)
      fail(`wrangler.toml [env.${env}] names database ${plan.databaseId}, but "${plan.database}" is ${db.uuid}: fix one of them`);
    if (!writeDatabaseId(env, db.uuid)) fail(`could not write the id; paste under [[env.${env}.d1_databases]]: database_id = "${db.uuid}"`);
    console.log(`   wrote database_id = "${db.uuid}" into wrangler.toml [env.${env}] (commit it)`);
  }

  console.log("\n2. Remote migrations");
  wrangler(["d1", "migrations", "apply", "DB", "--remote", "--env", env], { interactive: true });

  console.log("\n3. Read replication");
  const info = parseJson(wrangler(["d1", "info", plan.database, "--json"]) ?? "{}");
  if (info.read_replication?.mode === "auto") console.log('   already "auto"');
  else await enableReadReplication(db.uuid);

  console.log("\n4. Queues");
  const retention = ["--message-retention-period-secs", String(RETENTION_SECONDS)];
  for (const q of [plan.eventsQueue, plan.deadLetterQueue]) {
    if (wrangler(["queues", "info", q], { mayFail: true }) !== null) wrangler(["queues", "update", q, ...retention]);
    else wrangler(["queues", "create", q, ...retention]);
  }

  console.log("\n5. Secrets");
  const listed = wrangler(["secret", "list", "--env", env, "--format", "json"], { mayFail: true });
  const have = new Set(listed === null ? [] : /** @type {{ name: string }[]} */ (parseJson(listed)).map((s) => s.name));
  for (const s of REQUIRED_SECRETS) {
    if (have.has(s)) console.log(`   ${s}: set`);
    else {
      console.log(
        `   ${s}: missing. ${s === "JWT_SECRET" ? "A long random string, e.g. `openssl rand -base64 48`." : "The bearer token for /api/v1/admin, e.g. `openssl rand -hex 32`; keep it."}`,
      );
      wrangler(["secret", "put", s, "--env", env], { interactive: true });
    }
  }
}

/**
 * PUT /accounts/{account}/d1/database/{id} {"read_replication":{"mode":"auto"}} with wrangler's
 * credentials (an API token, or the OAuth token of `wrangler login`).
 * @param {string} databaseId
 */
async function enableReadReplication(databaseId) {
  const auth = parseJson(wrangler(["auth", "token", "--json"]) ?? "{}");
  /** @type {Record<string, string>} */
  const headers =
    auth.type === "api_key" ? { "X-Auth-Key": auth.key, "X-Auth-Email": auth.email } : { Authorization: `Bearer ${auth.token}` };
  let account = process.env.CLOUDFLARE_ACCOUNT_ID;
  if (!account) {
    const who = parseJson(wrangler(["whoami", "--json"]) ?? "{}");
    if (who.accounts?.length !== 1) fail(`this login sees ${who.accounts?.length ?? 0} accounts: set CLOUDFLARE_ACCOUNT_ID and run again`);
    account = who.accounts[0].id;
  }
  console.log(
    `  $ curl -X PUT https://api.cloudflare.com/client/v4/accounts/${account}/d1/database/${databaseId} -d '{"read_replication":{"mode":"auto"}}'`,
  );
  const res = await fetch(`https://api.cloudflare.com/client/v4/accounts/${account}/d1/database/${databaseId}`, {
    method: "PUT",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify({ read_replication: { mode: "auto" } }),
  });
  /** @type {{ success?: boolean, errors?: unknown }} */
  const body = /** @type {any} */ (await res.json().catch(() => ({})));
  if (!res.ok || body.success === false) fail(`enabling read replication: ${res.status} ${JSON.stringify(body.errors ?? body)}`);
  console.log('   read replication: "auto"');
}

// ---- main ----

const opts = parseArgs(process.argv.slice(2));
const plan = await readPlan(opts.env);
const days = (/** @type {number} */ s) => `${(s / 86_400).toFixed(1)} days`;
console.log(`deploy:setup --env ${opts.env}${opts.dryRun ? " --dry-run: nothing runs; every command it would run, in order" : ""}`);
console.log(
  `  Worker ${plan.name}; D1 ${plan.database}${plan.location ? ` (location ${plan.location})` : " (no DO_LOCATION_HINT: created near you)"}; queues ${plan.eventsQueue}, ${plan.deadLetterQueue}`,
);
console.log(
  `  retention ${days(RETENTION_SECONDS)} covers the retries: events ${plan.eventRetries} (${eventRetrySpan(plan.eventRetries)} s), ` +
    `dead letters ${plan.deadLetterRetries} (${days(deadLetterRetrySpan(plan.deadLetterRetries))})`,
);
if (opts.dryRun) printDryRun(plan, opts);
else await run(plan, opts);

console.log("\nNext (docs/DEPLOY.md):");
if (plan.placeholderRoutes.length > 0)
  console.log(
    `  - replace the placeholder route ${plan.placeholderRoutes.join(", ")} in wrangler.toml [env.${opts.env}] with your own hostname`,
  );
console.log(`  - npx wrangler deploy --env ${opts.env}`);
console.log(
  `  - smoke test: BASE=https://<your hostname>${plan.workersDev ? ` (or https://${plan.name}.<subdomain>.workers.dev, without the edge cache)` : ""}; see docs/DEPLOY.md step 6`,
);
