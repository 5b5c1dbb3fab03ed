#!/usr/bin/env node
/**
 * `npm run deps:check` (also in .ci/run): arrows point inward (STYLE.md).
 * - `src/shared/` and `src/db/` may import each other and packages, nothing else of src/.
 * - `src/sharding/` (the sharded-quantity protocol) may import `src/shared/` and `src/db/`, never a
 *   bounded context (coupons, products, orders, ...) nor the composition root.
 * None of them imports the composition root (app.ts, app-env.ts, services.ts, config.ts, index.ts,
 * jobs.ts), not even a type. Import cycles are dpdm's job (run before this, types included).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../src");
/** Each inner room and the rooms it may import (itself included). */
const ALLOWED = {
  shared: ["shared", "db"],
  db: ["shared", "db"],
  sharding: ["sharding", "shared", "db"],
};
/** @type {string[]} */
const bad = [];
for (const [room, allowed] of Object.entries(ALLOWED)) {
  for (const file of readdirSync(join(SRC, room)).filter((f) => f.endsWith(".ts"))) {
    const text = readFileSync(join(SRC, room, file), "utf8");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]*)"/g)) {
      const target = relative(SRC, resolve(join(SRC, room), m[1]));
      // A file directly under src/ (the composition root) has no room: never allowed.
      const targetRoom = target.includes("/") ? target.split("/")[0] : "";
      if (!allowed.includes(targetRoom)) bad.push(`src/${room}/${file} imports ${m[1]} (src/${target})`);
    }
  }
}
if (bad.length > 0) {
  console.error(`layering: shared/, db/ and sharding/ must not import outward:\n  ${bad.join("\n  ")}`);
  process.exit(1);
}
console.log(`layering: src/shared and src/db import nothing above themselves; src/sharding imports only shared/ and db/`);
