// Runs in Node before the workerd test pool starts: starts the Upstash-REST bridge
// against a real redis-server and hands its URL to the bindings via provide/inject.
import { createServer, type Socket } from "node:net";
import type { TestProject } from "vitest/node";
// @ts-expect-error: plain ESM script without type declarations
import { redisReachable, startBridge } from "../../scripts/upstash-bridge.mjs";
// @ts-expect-error: plain ESM script without type declarations
import { startSink } from "../../scripts/http-sink.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    redisBridgeUrl: string;
    redisBridgeToken: string;
    sinkUrl: string;
    blackholeUrl: string;
  }
}

export default async function setup(project: TestProject) {
  // The data platform / Kafka REST stand-in: a real local HTTP server that records what it gets.
  const sink = await startSink();
  project.provide("sinkUrl", sink.url);
  // A TCP server that accepts and never answers: a Redis that hangs, to prove the request-path timeout.
  const held: Socket[] = [];
  const blackhole = createServer((socket) => void held.push(socket));
  await new Promise<void>((resolve) => blackhole.listen(0, "127.0.0.1", resolve));
  const address = blackhole.address();
  project.provide("blackholeUrl", typeof address === "object" && address ? `http://127.0.0.1:${address.port}` : "");
  const closeBlackhole = () => {
    for (const s of held) s.destroy();
    blackhole.close();
  };

  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  if (!(await redisReachable(redisUrl))) {
    const msg = `no redis-server at ${redisUrl}: the Redis-backed suites are SKIPPED`;
    if (process.env.CI === "true") throw new Error(`${msg} — under CI=true that is a failure. Start redis-server.`);
    console.warn(`\n!!!!!!!!!!\n!!! ${msg}\n!!! start one (redis-server --port 6379) to run them.\n!!!!!!!!!!\n`);
    project.provide("redisBridgeUrl", "");
    project.provide("redisBridgeToken", "");
    return async () => {
      await sink.close();
      closeBlackhole();
    };
  }
  const bridge = await startBridge({ redisUrl, token: `test-${process.pid}` });
  project.provide("redisBridgeUrl", bridge.url);
  project.provide("redisBridgeToken", bridge.token);
  return async () => {
    await bridge.close();
    await sink.close();
    closeBlackhole();
  };
}
