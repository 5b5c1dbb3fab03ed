import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: D1Migration[];
      TEST_REDIS_URL: string;
      TEST_REDIS_TOKEN: string;
      TEST_SINK_URL: string;
      TEST_BLACKHOLE_URL: string;
      /** Write limiters of 1, 2 and 3 per minute (vitest.config.ts), to swap for WRITES_PER_USER / WRITES_PER_IP. */
      TEST_WRITES_1: RateLimit;
      TEST_WRITES_2: RateLimit;
      TEST_WRITES_3: RateLimit;
    }
  }
}
