import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    test: {
      // Under CI a JSON report lets .ci/run print a plain "N passed, N failed" line (both projects).
      reporters: process.env.CI ? ["default", "json"] : ["default"],
      outputFile: { json: ".vitest-results.json" },
      // Per-request info logs drown the report; warnings and errors still show (a root option: it applies to every project).
      onConsoleLog: (line: string) => !line.includes('"level":"info"'),
      projects: [
        {
          // Everything but the browser test runs inside workerd (the app, its objects, D1, queues).
          plugins: [
            cloudflareTest(({ inject }) => ({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  ADMIN_TOKEN: "test-admin-token",
                  // Test-only: suites that exercise Redis pass these to the app explicitly, so
                  // every other suite runs the D1 fallback path and no two files share keys.
                  TEST_REDIS_URL: inject("redisBridgeUrl"),
                  TEST_REDIS_TOKEN: inject("redisBridgeToken"),
                  TEST_SINK_URL: inject("sinkUrl"),
                  TEST_BLACKHOLE_URL: inject("blackholeUrl"),
                  // The queue consumer delivers to the recording sink; retries are immediate in tests.
                  DATA_PLATFORM_URL: `${inject("sinkUrl")}/platform`,
                  EVENT_RETRY_BASE_SECONDS: "0",
                },
                // Test-only write limits small enough to reach (test/security/rate-limit.test.ts); the
                // app's own WRITES_PER_USER / WRITES_PER_IP come from wrangler.toml.
                ratelimits: {
                  TEST_WRITES_1: { namespace_id: "9001", simple: { limit: 1, period: 60 } },
                  TEST_WRITES_2: { namespace_id: "9002", simple: { limit: 2, period: 60 } },
                  TEST_WRITES_3: { namespace_id: "9003", simple: { limit: 3, period: 60 } },
                },
              },
            })),
          ],
          test: {
            name: "workers",
            sequence: { groupOrder: 0 },
            globalSetup: ["./test/support/global-setup.ts"],
            setupFiles: ["./test/support/apply-migrations.ts"],
            include: ["test/**/*.test.ts"],
            exclude: ["test/browser/**"],
            testTimeout: 30_000,
            hookTimeout: 30_000,
          },
        },
        {
          // Node: Chromium (playwright-core) against `wrangler dev`, started by the test itself.
          test: {
            name: "browser",
            // Its own group, never beside the workerd suites: two cores, and its waits are on a live server.
            sequence: { groupOrder: 1 },
            environment: "node",
            include: ["test/browser/**/*.test.ts"],
            testTimeout: 180_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});
