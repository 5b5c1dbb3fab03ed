/** Vite's `?raw` imports (a file as text), e.g. wrangler.toml in test/events/retry-schedule.test.ts. */
declare module "*?raw" {
  const text: string;
  export default text;
}
