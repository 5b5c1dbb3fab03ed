/**
 * D1's transient failures: the binding throws an Error whose message (or, under
 * drizzle, the message of its `cause`) carries one of these phrases when the
 * database is overloaded, restarting or briefly out of reach. They come from
 * the "List of D1_ERRORs" in Cloudflare's "Debug D1" page, the rows whose
 * recommended action is to retry, or to send fewer requests by spreading them
 * over time (overload). A request that meets one is answered 503 with
 * Retry-After (src/app.ts), not 500: nothing is wrong with the request or the
 * code, and the client should come back in a moment.
 *
 * Left out on purpose: "D1 DB exceeded its CPU time limit" and "... its memory
 * limit and was reset" (the fix there is a smaller query: a bug of ours that
 * must stay a 500 with an error log), and every SQL or constraint error.
 */
export const TRANSIENT_D1_MESSAGES: readonly string[] = [
  // "D1 DB is overloaded. Requests queued for too long." / "... Too many requests queued."
  "D1 DB is overloaded",
  // "D1 DB reset because its code was updated." (and a Durable Object's own "... reset because its code was updated.")
  "reset because its code was updated",
  // "Internal error while starting up D1 DB storage caused object to be reset." / "Internal error in D1 DB storage caused object to be reset."
  "D1 DB storage caused object to be reset",
  // "D1 DB storage operation exceeded timeout which caused object to be reset."
  "storage operation exceeded timeout which caused object to be reset",
  "Network connection lost",
  "Cannot resolve D1 DB due to transient issue on remote node",
  "Can't read from request stream because client disconnected",
];

/** How deep a chain of `cause`s is followed (drizzle wraps once; a repo may wrap again). */
const MAX_CAUSE_DEPTH = 5;

/**
 * The error in `err`'s cause chain whose message is one of D1's transient
 * failures (the one to log: it has D1's own words), or undefined.
 */
export function transientD1Cause(err: unknown): Error | undefined {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < MAX_CAUSE_DEPTH; depth++) {
    const message = e.message;
    if (TRANSIENT_D1_MESSAGES.some((phrase) => message.includes(phrase))) return e;
    e = e.cause;
  }
  return undefined;
}

/** Whether `err` (or an error it wraps) is a D1 failure that a retry a moment later may not meet. */
export function isTransientD1Error(err: unknown): boolean {
  return transientD1Cause(err) !== undefined;
}
