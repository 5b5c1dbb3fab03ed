/**
 * The benchmarks' HTTP side: which target a run may send requests to, its credentials
 * (admin token, user JWTs), and one-off JSON calls.
 *
 * By default only loopback URLs are accepted (the local server the scripts start). A storm
 * run with `--url` (scripts/bench/lib/target.mjs) registers that one origin with
 * `allowRemoteTarget`; nothing else beyond loopback is ever loaded.
 */
import { sign } from "hono/jwt";
import { ADMIN_TOKEN } from "../server.mjs";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
/** Remote origins the operator named (`--url`): the only non-loopback targets allowed. */
const remoteOrigins = new Set();

/** Credentials of the target: the admin token, and the JWT secret user routes need (if any). */
const credentials = { adminToken: ADMIN_TOKEN, jwtSecret: /** @type {string | undefined} */ (undefined) };
/** `authorization` values per user id, signed ahead by `prepareUserTokens`. */
const userTokens = new Map();

/**
 * Throws unless `url` is on loopback (the local server).
 * @param {string} url
 */
export function assertLoopback(url) {
  const { hostname } = new URL(url);
  if (!LOOPBACK_HOSTS.has(hostname)) throw new Error(`refusing to load a non-loopback target: ${url}`);
}

/**
 * Throws unless `url` is on loopback or on the remote origin the operator named with `--url`.
 * @param {string} url
 */
export function assertTarget(url) {
  if (remoteOrigins.has(new URL(url).origin)) return;
  assertLoopback(url);
}

/**
 * Allows requests to `url`'s origin (a deployed Worker an operator rehearses on) and sets the
 * credentials for it. Only `--url` calls this.
 * @param {string} url
 * @param {{ adminToken: string, jwtSecret?: string }} creds
 */
export function allowRemoteTarget(url, { adminToken, jwtSecret }) {
  const u = new URL(url);
  if (u.protocol !== "https:" && !LOOPBACK_HOSTS.has(u.hostname)) throw new Error(`--url must be https (or loopback): ${url}`);
  remoteOrigins.add(u.origin);
  credentials.adminToken = adminToken;
  credentials.jwtSecret = jwtSecret;
}

/** @returns {Record<string, string>} */
export function adminHeaders() {
  return { authorization: `Bearer ${credentials.adminToken}` };
}

/** Whether user routes need a JWT (a secret was given for the target). */
export const userTokensNeeded = () => credentials.jwtSecret !== undefined;

/**
 * Signs an HS256 JWT (`sub` = user id, valid `ttlS` seconds) for each user, once, so that
 * `userHeaders` can answer synchronously inside autocannon's request builder. No-op without
 * a JWT secret (a local server runs with user routes open).
 * @param {Iterable<number>} userIds
 * @param {{ ttlS?: number }} [o]
 */
export async function prepareUserTokens(userIds, { ttlS = 3600 } = {}) {
  const secret = credentials.jwtSecret;
  if (secret === undefined) return;
  const now = Math.floor(Date.now() / 1000);
  for (const id of userIds) {
    if (userTokens.has(id)) continue;
    userTokens.set(id, `Bearer ${await sign({ sub: String(id), iat: now, exp: now + ttlS }, secret, "HS256")}`);
  }
}

/**
 * The headers a request on behalf of `userId` carries: its JWT when the target needs one.
 * @param {number} userId
 * @returns {Record<string, string>}
 */
export function userHeaders(userId) {
  if (credentials.jwtSecret === undefined) return {};
  const token = userTokens.get(userId);
  if (!token) throw new Error(`no token prepared for user ${userId} (call prepareUserTokens first)`);
  return { authorization: token };
}

/**
 * @typedef {object} ApiOptions
 * @property {boolean} [admin]    send the admin token
 * @property {number} [user]      send this user's JWT (when the target needs one)
 * @property {number} [timeoutMs] default 10,000
 */

/**
 * One JSON request; returns `{status, json}` (`json` is `{raw}` for a body that is not JSON).
 * @param {string} base
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {ApiOptions} [o]
 * @returns {Promise<{ status: number, json: any }>}
 */
export async function api(base, method, path, body, { admin = false, user, timeoutMs = 10_000 } = {}) {
  const url = new URL(path, base).toString();
  assertTarget(url);
  const res = await fetch(url, {
    method,
    headers: {
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(admin ? adminHeaders() : {}),
      ...(user !== undefined ? userHeaders(user) : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json };
}

/**
 * Whether a POST route exists in this build: an empty body gets 400 from a real route
 * and 404 NOT_FOUND (Hono's notFound) from a missing one. Spends nothing.
 * @param {string} base
 * @param {string} path
 */
export async function routeExists(base, path) {
  const { status, json } = await api(base, "POST", path, {});
  return !(status === 404 && json?.error === "NOT_FOUND");
}

/**
 * Runs `fn` over `items` with at most `concurrency` in flight; results in order.
 * @template T, R
 * @param {readonly T[]} items
 * @param {number} concurrency
 * @param {(item: T, index: number) => Promise<R>} fn
 * @returns {Promise<R[]>}
 */
export async function mapLimit(items, concurrency, fn) {
  /** @type {R[]} */
  const out = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(/** @type {T} */ (items[i]), i);
    }
  });
  await Promise.all(workers);
  return out;
}

/**
 * @typedef {{ batches: number, requests: number, largest?: number, split?: number, failed?: number }} D1GroupStats
 */

/**
 * The server's group-commit counters per kind (`GET /api/v1/admin/d1-groups`), or undefined on a build without the route.
 * @param {string} url
 * @returns {Promise<Record<string, D1GroupStats> | undefined>}
 */
export async function d1Groups(url) {
  const r = await api(url, "GET", "/api/v1/admin/d1-groups", undefined, { admin: true });
  return r.status === 200 ? r.json.data.kinds : undefined;
}
