import type { Context } from "hono";
import { AppError } from "./errors";
import { isPublicRead } from "./request-user";

/**
 * D1 read replication through the Sessions API. Each request runs all its D1 work
 * in one `withSession()`, whose start is chosen here, and answers the session's
 * latest bookmark in `x-d1-bookmark`; a client that sends it back reads at least
 * what that answer had seen (its own writes), even from a replica.
 */
export const BOOKMARK_HEADER = "x-d1-bookmark";

/**
 * A D1 bookmark: four dash-separated hex fields (8-8-8-32), e.g.
 * `00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683`. Local D1 accepts
 * any string, so the shape is checked here, before it reaches D1.
 */
const BOOKMARK = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/i;

/**
 * Where a request's D1 work runs: a session started with a constraint or the client's
 * bookmark, or `primary`, no session at all (every query on the primary: crons and
 * other work that acts on the latest commit, src/db/client.ts primaryD1).
 */
export type SessionStart = { kind: "first-unconstrained" | "first-primary" } | { kind: "bookmark"; bookmark: string } | { kind: "primary" };

/** The argument `withSession()` takes for a session start. */
export const withSessionArg = (start: Exclude<SessionStart, { kind: "primary" }>): string =>
  start.kind === "bookmark" ? start.bookmark : start.kind;

/**
 * The start for one request:
 * - a well-formed `x-d1-bookmark` wins on every route (read-your-writes across requests);
 * - otherwise public catalogue and ranking reads may read any replica (`first-unconstrained`);
 * - everything else (writes, a user's own data, admin) starts at the primary (`first-primary`).
 * A malformed bookmark is a 400 VALIDATION_FAILED, not ignored: a client that sends
 * garbage would otherwise silently lose read-your-writes. An empty header counts as absent
 * (Cloudflare's own example echoes `getBookmark() ?? ""`).
 */
export function sessionStartFor(c: Context): SessionStart {
  const raw = c.req.header(BOOKMARK_HEADER)?.trim();
  if (raw) {
    if (raw.length > 128 || !BOOKMARK.test(raw)) throw new AppError("VALIDATION_FAILED", `${BOOKMARK_HEADER}: not a D1 bookmark`);
    return { kind: "bookmark", bookmark: raw };
  }
  return isPublicRead(c.req.method, c.req.path) ? { kind: "first-unconstrained" } : { kind: "first-primary" };
}

/**
 * The newer of two bookmarks (null: none). Bookmarks sort oldest to newest as strings; the
 * runtime's own sessions keep the newest the same way (workerd's d1-api `_updateBookmark`).
 */
export function laterBookmark(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.localeCompare(b) < 0 ? b : a;
}
