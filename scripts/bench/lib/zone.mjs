/**
 * The UTC offset of `timeZone` at `ms`, in ms (what the app's src/shared/clock.ts computes with the same
 * Intl parts), for scripts that build business days without importing the Worker's code.
 * @param {number} ms
 * @param {string} timeZone
 */
export function zoneOffsetMs(ms, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(ms));
  /** @param {string} t */
  const get = (t) => Number(parts.find((p) => p.type === t)?.value);
  return Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second")) - Math.floor(ms / 1000) * 1000;
}
