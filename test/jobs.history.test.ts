import { describe, expect, it } from "vitest";
import { JOBS } from "../src/jobs";
import { seedSettledHistory } from "./support/settled-history";
import { runJob } from "./support/jobs";
import { historyWalks, planOf, statementsOf } from "./support/plans";

const ALL = Object.entries(JOBS).flatMap(([cron, jobs]) => jobs.map((j) => ({ cron, name: j.name })));

/** Every job once, nothing due: rows each read from D1. */
async function rowsReadByJob(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const { cron, name } of ALL) out[name] = (await runJob(cron, name)).d1.rowsRead;
  return out;
}

describe("cron jobs with nothing due read a handful of D1 rows, whatever the history", () => {
  it("every job reads the same rows beside 5,000 settled orders, coupons, points, events and keys as beside none", async () => {
    const before = await rowsReadByJob();
    await seedSettledHistory({ n: 5_000, tag: "all-jobs", now: Date.now() });
    const after = await rowsReadByJob();
    for (const { name } of ALL) {
      expect({ name, extra: after[name]! - before[name]! }).toEqual({ name, extra: expect.toBeOneOf([0, 1, 2, 3]) });
      expect({ name, rows: after[name]! }).toEqual({ name, rows: expect.toSatisfy((n: number) => n < 20) });
    }
  });

  it("no statement a job sends walks a history table whole (the dead-placement pick reads only placements in flight)", async () => {
    for (const { cron, name } of ALL) {
      for (const sql of await statementsOf(() => runJob(cron, name))) {
        if (/status = 'PENDING' AND created_at/.test(sql)) continue;
        expect({ job: name, sql, walks: historyWalks(await planOf(sql)) }).toEqual({ job: name, sql, walks: [] });
      }
    }
  });
});
