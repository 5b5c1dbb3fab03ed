/**
 * Time helpers. All instants are stored as epoch milliseconds in D1 and shown
 * as ISO-8601 strings over HTTP.
 */
export const now = (): number => Date.now();

export const toIso = (ms: number): string => new Date(ms).toISOString();

export const toIsoOrNull = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : toIso(ms));

/**
 * The business day (`yyyy-MM-dd`) of an instant in an IANA time zone, e.g.
 * Asia/Seoul. Rankings and best sellers are keyed by it.
 */
export function businessDate(ms: number, timeZone: string): string {
  return formatter(DATE_FORMATS, timeZone).format(new Date(ms));
}

/**
 * Formatters by time zone, built once per isolate: building an Intl.DateTimeFormat costs far more
 * than using one (4.8% of the Worker's CPU in a payment storm's profile when every paid order's
 * ranking increment built its own; `npm run profile:cpu -- --scenario payments`).
 */
interface FormatterCache {
  locale: string;
  options: Intl.DateTimeFormatOptions;
  byZone: Map<string, Intl.DateTimeFormat>;
}
// en-CA formats as yyyy-MM-dd.
const DATE_FORMATS: FormatterCache = { locale: "en-CA", options: { year: "numeric", month: "2-digit", day: "2-digit" }, byZone: new Map() };
const INSTANT_FORMATS: FormatterCache = {
  locale: "en-US",
  options: { hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" },
  byZone: new Map(),
};

function formatter(cache: FormatterCache, timeZone: string): Intl.DateTimeFormat {
  let f = cache.byZone.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat(cache.locale, { ...cache.options, timeZone });
    cache.byZone.set(timeZone, f);
  }
  return f;
}

/** Adds whole days to a `yyyy-MM-dd` date (calendar arithmetic, zone-free). */
export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/**
 * The UTC instant at which a business day starts in `timeZone`.
 * Works for zones without DST at midnight (all zones we configure); it
 * corrects by the zone offset observed at that instant.
 */
export function startOfBusinessDay(date: string, timeZone: string): number {
  const utcMidnight = Date.parse(`${date}T00:00:00Z`);
  const offset = zoneOffsetMs(utcMidnight, timeZone);
  return utcMidnight - offset;
}

function zoneOffsetMs(ms: number, timeZone: string): number {
  const parts = formatter(INSTANT_FORMATS, timeZone).formatToParts(new Date(ms));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return asUtc - Math.floor(ms / 1000) * 1000;
}
