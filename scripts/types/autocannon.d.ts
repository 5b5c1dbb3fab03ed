// The part of autocannon (no bundled types) the benchmarks use: scripts/bench/lib/load.mjs.
declare module "autocannon" {
  import type { EventEmitter } from "node:events";

  /** Response headers as autocannon passes them to `onResponse`: raw names as keys. */
  export type RawHeaders = Record<string, string | string[] | undefined>;

  export interface RequestSpec {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string;
  }

  export interface Request extends RequestSpec {
    setupRequest?: (req: RequestSpec, context: Record<string, any>) => RequestSpec;
    onResponse?: (status: number, body: string, context: Record<string, any>, headers: RawHeaders) => void;
  }

  export interface Options {
    url: string;
    connections?: number;
    timeout?: number;
    amount?: number;
    duration?: number;
    requests?: Request[];
  }

  export interface Result {
    errors: number;
    timeouts: number;
    [key: string]: unknown;
  }

  export interface Instance extends EventEmitter {
    stop(): void;
    on(event: "response", listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): this;
    on(event: "done", listener: (result: Result) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
  }

  export default function autocannon(opts: Options, cb: (err: Error | null, result: Result) => void): Instance;
}
