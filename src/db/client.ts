import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";

/**
 * The query builder over D1. Built per request (over the request's metered binding),
 * so it is built without the relational schema: nothing uses `db.query`, and
 * extracting the relations cost about 1% of a coupon storm's CPU (profile, docs/PERFORMANCE.md).
 */
export type Db = DrizzleD1Database;

export function createDb(d1: D1Database): Db {
  return drizzle(d1);
}

/**
 * D1 reports a failed CHECK as an Error whose message (or cause's message)
 * names the constraint; this finds it so a batch abort maps to a business error.
 */
export function constraintFailed(err: unknown, name: string): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof Error && e.message.includes(name)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
