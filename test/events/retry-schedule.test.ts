import { describe, expect, it } from "vitest";
// The deploy's own file, as text (Vite's ?raw): the schedule is checked against what wrangler deploys.
import wranglerToml from "../../wrangler.toml?raw";
import deploySetup from "../../scripts/deploy-setup.mjs?raw";
import {
  DEAD_LETTER_MAX_RETRIES,
  deadLetterRetrySeconds,
  isDeadLetterQueue,
  EVENT_MAX_RETRIES,
  QUEUE_RETENTION_SECONDS,
  QUEUES_MAX_DELAY_SECONDS,
  RETENTION_MARGIN_SECONDS,
  retryDelaySeconds,
  retryScheduleSeconds,
} from "../../src/events/consumer";

/** Every `[[…queues.consumers]]` table of wrangler.toml (top level and per environment): its queue and max_retries. */
function consumersOf(toml: string): { table: string; queue: string; maxRetries: number; deadLetterQueue?: string }[] {
  const out: { table: string; queue: string; maxRetries: number; deadLetterQueue?: string }[] = [];
  const tables = toml.split(/^(?=\[)/m);
  for (const t of tables) {
    const header = /^\[\[([\w.-]*queues\.consumers)\]\]/.exec(t);
    if (!header) continue;
    const queue = /^queue\s*=\s*"([^"]+)"/m.exec(t)?.[1];
    const retries = /^max_retries\s*=\s*(\d+)/m.exec(t)?.[1];
    if (!queue || retries === undefined) throw new Error(`consumer table without queue or max_retries: ${t}`);
    out.push({
      table: header[1]!,
      queue,
      maxRetries: Number(retries),
      deadLetterQueue: /^dead_letter_queue\s*=\s*"([^"]+)"/m.exec(t)?.[1],
    });
  }
  return out;
}

/** The events consumer's delay at its slowest configuration (EVENT_RETRY_BASE_SECONDS at its maximum, 60). */
const slowestEventDelay = (attempts: number) => retryDelaySeconds(attempts, 60);
const usable = QUEUE_RETENTION_SECONDS - RETENTION_MARGIN_SECONDS;

describe("queue retry schedules fit the queues' message retention", () => {
  it("a retention Cloudflare can create (at most 14 days), the one deploy:setup creates the queues with", () => {
    expect(QUEUE_RETENTION_SECONDS).toBeGreaterThan(4 * 86_400);
    expect(QUEUE_RETENTION_SECONDS).toBeLessThanOrEqual(14 * 86_400);
    // scripts/deploy-setup.mjs creates the queues with this retention.
    const setup = /const RETENTION_SECONDS = ([\d_]+) \* ([\d_]+);/.exec(deploySetup);
    expect(setup, "scripts/deploy-setup.mjs names its retention").not.toBeNull();
    const num = (s: string) => Number(s.replace(/_/g, ""));
    expect(num(setup![1]!) * num(setup![2]!)).toBe(QUEUE_RETENTION_SECONDS);
  });

  it("the dead-letter schedule: 30 s doubling, capped, every delay within the Queues maximum; ~13.2 days in all", () => {
    expect([1, 2, 3, 11, 12, 36].map(deadLetterRetrySeconds)).toEqual([30, 60, 120, 30_720, 43_200, 43_200]);
    for (let a = 1; a <= DEAD_LETTER_MAX_RETRIES; a++) expect(deadLetterRetrySeconds(a)).toBeLessThanOrEqual(QUEUES_MAX_DELAY_SECONDS);
    expect(retryScheduleSeconds(DEAD_LETTER_MAX_RETRIES, deadLetterRetrySeconds)).toBe(1_141_410);
    expect(retryScheduleSeconds(DEAD_LETTER_MAX_RETRIES, deadLetterRetrySeconds)).toBeLessThanOrEqual(usable);
    // The old 100 retries needed ~45 days: no retention holds that.
    expect(retryScheduleSeconds(100, deadLetterRetrySeconds)).toBeGreaterThan(14 * 86_400);
  });

  it("wrangler.toml's consumers retry no longer than the retention allows (raising max_retries past it fails here)", () => {
    const consumers = consumersOf(wranglerToml);
    expect(consumers.map((c) => c.queue)).toEqual(expect.arrayContaining(["edge-commerce-events", "edge-commerce-events-dlq"]));
    for (const c of consumers) {
      const deadLetters = isDeadLetterQueue(c.queue);
      const schedule = retryScheduleSeconds(c.maxRetries, deadLetters ? deadLetterRetrySeconds : slowestEventDelay);
      expect(schedule, `${c.table} ${c.queue}: max_retries = ${c.maxRetries} spans ${schedule} s`).toBeLessThanOrEqual(usable);
      expect(c.maxRetries, `${c.table} ${c.queue} matches the code's constant`).toBe(
        deadLetters ? DEAD_LETTER_MAX_RETRIES : EVENT_MAX_RETRIES,
      );
    }
  });

  it("the Worker routes each consumed queue by name: every dead_letter_queue is a dead-letter queue, every other consumed queue is not", () => {
    const consumers = consumersOf(wranglerToml);
    const deadLetterQueues = new Set(consumers.flatMap((c) => (c.deadLetterQueue ? [c.deadLetterQueue] : [])));
    expect(deadLetterQueues.size).toBeGreaterThanOrEqual(1);
    for (const c of consumers) expect(isDeadLetterQueue(c.queue), `${c.table} ${c.queue}`).toBe(deadLetterQueues.has(c.queue));
    expect(
      ["edge-commerce-events-dlq", "edge-commerce-events-dlq-staging", "edge-commerce-events-dlq-production"].every(isDeadLetterQueue),
    ).toBe(true);
    expect(["edge-commerce-events", "edge-commerce-events-staging", "dlq-events"].some(isDeadLetterQueue)).toBe(false);
  });

  it("the check catches a schedule that outgrows the retention", () => {
    const raised = wranglerToml.replace(/max_retries = 36/, "max_retries = 38");
    const dlq = consumersOf(raised).find((c) => isDeadLetterQueue(c.queue))!;
    expect(retryScheduleSeconds(dlq.maxRetries, deadLetterRetrySeconds)).toBeGreaterThan(usable);
  });
});
