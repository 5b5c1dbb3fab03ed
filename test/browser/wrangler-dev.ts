import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** wrangler must not reach Cloudflare (docs/ARCHITECTURE.md §7). */
const OFFLINE = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", CI: "true" };

/** A free TCP port on loopback (bind port 0, read it, release it). */
export async function freePort(): Promise<number> {
  const srv = createNetServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

export interface DevServer {
  url: string;
  stop(): Promise<void>;
  /** What wrangler printed (for a failure message). */
  output(): string;
}

/**
 * `wrangler dev` on fresh local state (migrations applied first, to a temp dir), on free
 * loopback ports, with `vars` on top of wrangler.toml's; ready when /health answers.
 */
export async function startWranglerDev(vars: Record<string, string>): Promise<DevServer> {
  const state = mkdtempSync(join(tmpdir(), "console-e2e-"));
  execFileSync(process.execPath, [WRANGLER, "d1", "migrations", "apply", "DB", "--local", "--persist-to", state], {
    cwd: ROOT,
    env: OFFLINE,
    stdio: "ignore",
  });
  const [port, inspector] = [await freePort(), await freePort()];
  const args = [
    WRANGLER,
    "dev",
    "--port",
    String(port),
    "--inspector-port",
    String(inspector),
    "--ip",
    "127.0.0.1",
    "--persist-to",
    state,
    "--show-interactive-dev-session=false",
  ];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env: OFFLINE, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = once(child, "exit");
      // wrangler starts workerd as a child: end the whole group this test started.
      process.kill(-child.pid!, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) process.kill(-child.pid!, "SIGKILL");
    }
    rmSync(state, { recursive: true, force: true });
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${out}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev not ready after 90 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, stop, output: () => out };
}

/** A stand-in data platform: refuses deliveries (500) until `accept` is set, and records each one. */
export async function startPlatform(): Promise<{
  url: string;
  accept: boolean;
  received: { eventId: string; status: number }[];
  close(): Promise<void>;
}> {
  const platform = {
    url: "",
    accept: false,
    received: [] as { eventId: string; status: number }[],
    close: async () => {
      await new Promise((r) => server.close(r));
    },
  };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const status = platform.accept ? 200 : 500;
    platform.received.push({ eventId: String(req.headers["idempotency-key"] ?? ""), status });
    res.writeHead(status, { "content-type": "application/json" }).end("{}");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  platform.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/platform`;
  return platform;
}
