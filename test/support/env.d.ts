import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: D1Migration[];
      TEST_REDIS_URL: string;
      TEST_REDIS_TOKEN: string;
      TEST_SINK_URL: string;
      TEST_BLACKHOLE_URL: string;
    }
  }
}
export {};
