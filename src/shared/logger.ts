/**
 * Structured JSON logs (one object per line), so Workers Logs / `wrangler tail`
 * can filter by field. Never pass tokens, secrets or request bodies here.
 */
export type Level = "debug" | "info" | "warn" | "error";

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let minRank = RANK.info;

/** Sets the lowest level written (LOG_LEVEL; `warn` drops the per-request lines under load). */
export function setLogLevel(level: Level): void {
  minRank = RANK[level];
}

/** Bearer credentials and anything shaped like a JWT, in case one slips into an error message. */
const SECRETS = [/(Bearer\s+)[^\s"\\]+/gi, /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g];

/** Masks credentials in a log line (defence in depth: callers must not pass them at all). */
export function redact(line: string): string {
  return line.replace(SECRETS[0]!, "$1[redacted]").replace(SECRETS[1]!, "[redacted-jwt]");
}

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  if (RANK[level] < minRank) return;
  const line = redact(JSON.stringify({ level, msg, time: new Date().toISOString(), ...fields }));
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/** Error fields fit for a log line: name, message and stack, never for a response. */
export function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { errName: err.name, errMessage: err.message, stack: err.stack };
  return { errMessage: String(err) };
}
