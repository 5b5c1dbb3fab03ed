import { describe, expect, it } from "vitest";
import { addDays, businessDate, startOfBusinessDay } from "../../src/shared/clock";

describe("business day in Asia/Seoul", () => {
  it("puts 23:59 and 00:01 Seoul time on different days", () => {
    expect(businessDate(Date.parse("2026-11-25T23:59:00+09:00"), "Asia/Seoul")).toBe("2026-11-25");
    expect(businessDate(Date.parse("2026-11-26T00:01:00+09:00"), "Asia/Seoul")).toBe("2026-11-26");
    // 15:30 UTC is already the next day in Seoul.
    expect(businessDate(Date.parse("2026-11-25T15:30:00Z"), "Asia/Seoul")).toBe("2026-11-26");
  });

  it("finds the UTC start of a business day and does calendar arithmetic", () => {
    expect(startOfBusinessDay("2026-11-26", "Asia/Seoul")).toBe(Date.parse("2026-11-25T15:00:00Z"));
    expect(startOfBusinessDay("2026-11-26", "UTC")).toBe(Date.parse("2026-11-26T00:00:00Z"));
    expect(addDays("2026-03-01", -1)).toBe("2026-02-28");
    expect(addDays("2026-12-31", 1)).toBe("2027-01-01");
  });
});
