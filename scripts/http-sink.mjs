#!/usr/bin/env node
// A recording HTTP sink standing in for the external data platform and for a
// Kafka REST endpoint, in tests and in local dev.
//
//   POST /platform             data platform: 200, except by Idempotency-Key prefix:
//                              "always500-" -> always 500; "fail2-" -> 500 for the first two tries of that key
//   POST /kafka/produce        Upstash-Kafka-style produce: answers one {topic, partition, offset} per message
//   GET  /records              everything received: [{path, headers, body, status, at}]
//   GET  /records?key=K        only requests with Idempotency-Key K
//
// CLI: node scripts/http-sink.mjs [--port 8788]
import { createServer } from "node:http";

/**
 * @param {{ port?: number, log?: boolean }} [options]
 */
export async function startSink(options = {}) {
  /** @type {{ path: string, headers: import("node:http").IncomingHttpHeaders, body: any, status: number, at: number }[]} */
  const records = [];
  const tries = new Map();
  let offset = 0;
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString("utf8");
    /** @type {any} */
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // keep text
    }
    const url = new URL(req.url ?? "/", "http://sink");
    /**
     * @param {number} status
     * @param {unknown} payload
     */
    const send = (status, payload) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
      return status;
    };
    if (req.method === "GET" && url.pathname === "/records") {
      const key = url.searchParams.get("key");
      return send(200, key ? records.filter((r) => r.headers["idempotency-key"] === key) : records);
    }
    const record = { path: url.pathname, headers: req.headers, body, status: 0, at: Date.now() };
    records.push(record);
    if (req.method === "POST" && url.pathname === "/platform") {
      const key = String(req.headers["idempotency-key"] ?? "");
      const n = (tries.get(key) ?? 0) + 1;
      tries.set(key, n);
      if (options.log) console.log(`[sink] data platform received ${body?.type ?? "?"} ${key} (try ${n})`);
      if (key.startsWith("always500-") || (key.startsWith("fail2-") && n <= 2)) {
        record.status = send(500, { error: "injected failure" });
        return;
      }
      record.status = send(200, { received: key });
      return;
    }
    if (req.method === "POST" && url.pathname === "/kafka/produce") {
      const messages = Array.isArray(body) ? body : [body];
      record.status = send(
        200,
        messages.map((m) => ({ topic: m?.topic, partition: 0, offset: offset++ })),
      );
      return;
    }
    record.status = send(404, { error: "unknown sink path" });
  });
  await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--port");
  const sink = await startSink({ port: i > 0 ? Number(process.argv[i + 1]) : 8788, log: true });
  console.log(`http sink on ${sink.url} (POST /platform, POST /kafka/produce, GET /records)`);
}
