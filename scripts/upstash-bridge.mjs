#!/usr/bin/env node
// Upstash-REST bridge: speaks the subset of the Upstash Redis REST API that
// @upstash/redis uses and forwards to a real redis-server. A dev/test tool only.
//
//   POST /            body ["CMD", ...args]          -> {"result": ...}
//   POST /pipeline    body [["CMD", ...], ...]       -> [{"result": ...} | {"error": "..."}]
//   POST /multi-exec  same, atomically (MULTI/EXEC)  -> same shape
//   A path may start with a fault, to show how the clients' timeouts and retries behave:
//     /slow/<ms>/...        every request is held <ms> before it runs (not run if the client left meanwhile);
//     /drop-first/<tag>/... the first request with <tag> is never run nor answered; later ones are served.
//   Authorization: Bearer <token> (401 otherwise); `Upstash-Encoding: base64` makes every
//   string in a result base64 except the literal "OK" (what the client expects); errors are
//   non-2xx with {"error": "..."}.
//
// CLI: node scripts/upstash-bridge.mjs [--port 8079] [--token dev-token] [--redis redis://127.0.0.1:6379]
import { createServer } from "node:http";
import { createClient, RESP_TYPES } from "redis";

/** Converts a redis reply (Buffers for bulk strings) to the JSON the REST API returns. */
/**
 * @param {unknown} reply
 * @param {boolean} base64
 * @returns {unknown}
 */
function toJson(reply, base64) {
  if (reply === null || reply === undefined) return null;
  if (Buffer.isBuffer(reply)) return base64 ? reply.toString("base64") : reply.toString("utf8");
  if (typeof reply === "string") return base64 && reply !== "OK" ? Buffer.from(reply).toString("base64") : reply;
  if (typeof reply === "number") return reply;
  if (typeof reply === "bigint") return Number(reply);
  if (Array.isArray(reply)) return reply.map((r) => toJson(r, base64));
  if (reply instanceof Error) throw reply;
  if (reply instanceof Map) return [...reply.entries()].flat().map((r) => toJson(r, base64));
  // Map-shaped replies (HGETALL, ...) arrive as plain objects: the REST API returns them flat.
  if (typeof reply === "object")
    return Object.entries(reply)
      .flat()
      .map((r) => toJson(r, base64));
  return String(reply);
}

/**
 * @param {unknown} command
 * @returns {string[]}
 */
function toArgs(command) {
  if (!Array.isArray(command) || command.length === 0) throw new Error("ERR command must be a non-empty JSON array");
  return command.map((a) => {
    if (typeof a === "string") return a;
    if (typeof a === "number" || typeof a === "boolean") return String(a);
    if (a === null) return "";
    return JSON.stringify(a);
  });
}

/** @param {unknown} e */
const errText = (e) => (e instanceof Error ? e.message : String(e));

/**
 * Starts a bridge. Resolves to `{ url, port, token, close() }`.
 * @param {{ port?: number, host?: string, token?: string, redisUrl?: string }} [options]
 */
export async function startBridge(options = {}) {
  const token = options.token ?? "bridge-token";
  const host = options.host ?? "127.0.0.1";
  const client = createClient({ url: options.redisUrl ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379" });
  client.on("error", () => {}); // reported per request instead
  await client.connect();
  const raw = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const dropped = new Set();

  const server = createServer(async (req, res) => {
    /**
     * @param {number} status
     * @param {unknown} body
     */
    const send = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      if (req.headers.authorization !== `Bearer ${token}`) return send(401, { error: "Unauthorized" });
      if (req.method !== "POST") return send(405, { error: "only POST is supported" });
      const chunks = [];
      for await (const c of req) chunks.push(c);
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return send(400, { error: "ERR body is not valid JSON" });
      }
      const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
      let path = (req.url ?? "/").split("?")[0].replace(/\/+$/, "") || "/";
      const fault = /^\/(slow|drop-first)\/([^/]+)(\/.*)?$/.exec(path);
      if (fault) {
        path = fault[3] ?? "/";
        if (fault[1] === "drop-first" && !dropped.has(fault[2])) {
          dropped.add(fault[2]);
          return; // held open, unanswered, until the client gives up
        }
        if (fault[1] === "slow") {
          let gone = false;
          res.on("close", () => (gone = true));
          await new Promise((resolve) => setTimeout(resolve, Number(fault[2])));
          if (gone) return;
        }
      }
      if (path === "/") {
        try {
          return send(200, { result: toJson(await raw.sendCommand(toArgs(body)), base64) });
        } catch (e) {
          return send(400, { error: errText(e) });
        }
      }
      if (path === "/pipeline" || path === "/multi-exec") {
        if (!Array.isArray(body) || !body.every(Array.isArray)) return send(400, { error: "ERR body must be an array of commands" });
        if (path === "/pipeline") {
          const out = await Promise.all(
            body.map(async (cmd) => {
              try {
                return { result: toJson(await raw.sendCommand(toArgs(cmd)), base64) };
              } catch (e) {
                return { error: errText(e) };
              }
            }),
          );
          return send(200, out);
        }
        let args;
        try {
          args = body.map(toArgs);
        } catch (e) {
          return send(400, { error: errText(e) });
        }
        const multi = raw.multi();
        for (const a of args) multi.addCommand(a);
        let replies;
        try {
          replies = await multi.exec();
        } catch (e) {
          return send(400, { error: errText(e) });
        }
        return send(
          200,
          replies.map((r) => (r instanceof Error ? { error: r.message } : { result: toJson(r, base64) })),
        );
      }
      return send(404, { error: `unknown path ${path}` });
    } catch (e) {
      return send(500, { error: errText(e) });
    }
  });

  await new Promise((resolve) => server.listen(options.port ?? 0, host, () => resolve(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://${host}:${port}`,
    port,
    token,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      server.closeAllConnections?.();
      await client.quit().catch(() => {});
    },
  };
}

/** True when a redis-server answers PING at `url` within `timeoutMs`. */
export async function redisReachable(url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379", timeoutMs = 1000) {
  const client = createClient({ url, socket: { connectTimeout: timeoutMs, reconnectStrategy: false } });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    await client.quit().catch(() => {});
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  /**
   * @param {string} name
   * @param {string | undefined} fallback
   */
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const bridge = await startBridge({
    port: Number(arg("port", "8079")),
    token: arg("token", "dev-token"),
    redisUrl: arg("redis", undefined),
  });
  console.log(`upstash bridge on ${bridge.url} (token ${bridge.token}) -> redis`);
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => bridge.close().then(() => process.exit(0)));
}
