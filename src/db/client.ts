import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Db = DrizzleD1Database<typeof schema>;

/** One drizzle client over the D1 binding. Cheap; built per request. */
export function createDb(d1: D1Database): Db {
  return drizzle(d1, { schema });
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
