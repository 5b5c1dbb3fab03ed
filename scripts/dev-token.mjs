#!/usr/bin/env node
// Prints an HS256 JWT for a user, signed with JWT_SECRET (from the environment,
// else from .dev.vars), valid for one hour. Only the token goes to stdout, so:
//   TOKEN=$(npm run -s dev:token -- 1)
//   curl -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8787/api/v1/points?userId=1'
// Usage: npm run dev:token -- <userId> [ttlSeconds]
import { existsSync, readFileSync } from "node:fs";
import { sign } from "hono/jwt";

/** @param {string} name */
function fromDevVars(name) {
  if (!existsSync(".dev.vars")) return undefined;
  for (const line of readFileSync(".dev.vars", "utf8").split(/\r?\n/)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && m[1] === name) return m[2].replace(/\s+#.*$/, "").replace(/^(["'])(.*)\1$/, "$2");
  }
  return undefined;
}

const [userArg, ttlArg = "3600"] = process.argv.slice(2);
if (!userArg || !/^[1-9][0-9]{0,15}$/.test(userArg) || !Number.isSafeInteger(Number(userArg))) {
  console.error("usage: npm run dev:token -- <userId (positive integer)> [ttlSeconds]");
  process.exit(2);
}
const ttl = Number(ttlArg);
if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) {
  console.error("ttlSeconds must be 1..86400");
  process.exit(2);
}
const secret = process.env.JWT_SECRET?.trim() || fromDevVars("JWT_SECRET");
if (!secret) {
  console.error("JWT_SECRET is not set (environment or .dev.vars). Without it the local API is open and needs no token.");
  process.exit(1);
}
const now = Math.floor(Date.now() / 1000);
// sub is the user id as a string (docs/ARCHITECTURE.md §4); exp is required by the API.
process.stdout.write(`${await sign({ sub: userArg, iat: now, exp: now + ttl }, secret, "HS256")}\n`);
