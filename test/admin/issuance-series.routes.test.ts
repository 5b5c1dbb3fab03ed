import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { d1CostOf } from "../../src/shared/hops";
import { adminHeaders, api, createCoupon, errorCode } from "../support/http";
import { createUsers, issue } from "../coupons/support";

const series = (couponId: number, query = "") =>
  api.get(`/api/v1/admin/coupons/${couponId}/issuances${query ? `?${query}` : ""}`, adminHeaders);

/** Writes wins straight into D1 at chosen times (what the issuing objects project), for exact buckets. */
async function winsAt(couponId: number, times: number[]): Promise<void> {
  const users = await createUsers(times.length);
  await env.DB.batch(
    times.map((t, i) =>
      env.DB.prepare("INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at) VALUES (?, ?, ?, ?)").bind(
        users[i],
        couponId,
        t,
        t + 86_400_000,
      ),
    ),
  );
}

describe("GET /admin/coupons/{couponId}/issuances (the console's chart since the window opened)", () => {
  it("counts wins per bucket from the window's opening, oldest first, empty buckets left out", async () => {
    const opened = Math.floor((Date.now() - 600_000) / 60_000) * 60_000; // ten minutes ago, on a minute
    const couponId = await createCoupon({ startsAt: new Date(opened).toISOString(), quantity: 50 });
    await winsAt(couponId, [opened + 100, opened + 900, opened + 1_000, opened + 61_500, opened + 61_999]);

    const perSecond = await series(couponId);
    expect(perSecond.status, JSON.stringify(perSecond.body)).toBe(200);
    const d = perSecond.body.data;
    expect(d).toMatchObject({ couponId, bucketSeconds: 1, from: new Date(opened).toISOString(), issued: 5, nextFrom: null });
    expect(d.buckets).toEqual([
      { at: new Date(opened).toISOString(), issued: 2 },
      { at: new Date(opened + 1_000).toISOString(), issued: 1 },
      { at: new Date(opened + 61_000).toISOString(), issued: 2 },
    ]);
    expect(Date.parse(d.to)).toBeGreaterThan(opened + 61_999);

    const perMinute = (await series(couponId, "bucketSeconds=60")).body.data;
    expect(perMinute.buckets).toEqual([
      { at: new Date(opened).toISOString(), issued: 3 },
      { at: new Date(opened + 60_000).toISOString(), issued: 2 },
    ]);

    // Asked again from its last bucket, the console gets only what is new (here: the second minute's wins).
    const tail = (await series(couponId, `from=${encodeURIComponent(new Date(opened + 61_400).toISOString())}`)).body.data;
    expect(tail).toMatchObject({ from: new Date(opened + 61_000).toISOString(), issued: 2 });

    // Before the window opened there is nothing to count: `from` is clamped to the opening.
    const early = (await series(couponId, `from=${encodeURIComponent(new Date(opened - 3_600_000).toISOString())}`)).body.data;
    expect(early).toMatchObject({ from: new Date(opened).toISOString(), issued: 5 });
  });

  it("cuts a long span at 900 buckets and goes on from nextFrom until now, counting every win once", async () => {
    const opened = Math.floor((Date.now() - 7_100_000) / 1_000) * 1_000; // just under two hours of 1 s buckets: 8 answers
    const couponId = await createCoupon({ startsAt: new Date(opened).toISOString(), quantity: 50 });
    const times = [opened + 5, opened + 899_999, opened + 900_000, opened + 3_600_000, opened + 7_000_000];
    await winsAt(couponId, times);
    let from: string | null = null;
    let counted = 0;
    let answers = 0;
    do {
      const res = await series(couponId, from ? `from=${encodeURIComponent(from)}` : "");
      expect(res.status).toBe(200);
      const d = res.body.data;
      expect(Date.parse(d.to) - Date.parse(d.from)).toBeLessThanOrEqual(900_000);
      counted += d.issued;
      from = d.nextFrom;
      answers++;
    } while (from && answers < 20);
    expect(counted).toBe(times.length);
    expect(answers).toBe(8);
  });

  it("follows real issuances through the objects, and reads one index entry per win in its span whatever else the table holds", async () => {
    const busy = await createCoupon({ quantity: 100 });
    await winsAt(
      busy,
      Array.from({ length: 60 }, (_, i) => Date.now() - 1_000 - i),
    );
    const couponId = await createCoupon({ quantity: 10 });
    for (const userId of await createUsers(3)) expect((await issue(couponId, userId)).status).toBe(201);
    const res = await series(couponId, "bucketSeconds=3600");
    expect(res.body.data.issued).toBe(3);
    // The coupon's row plus its three wins (and SQLite's count of the grouped rows): the other coupon's 60 are not read.
    expect(d1CostOf(res.headers.get("server-timing")).rowsRead).toBeLessThanOrEqual(1 + 3 + 3);
  });

  it("refuses a bucket width it does not offer, a malformed from, an unknown field (400), an unknown coupon (404) and a missing token (401)", async () => {
    const couponId = await createCoupon({ quantity: 5 });
    for (const q of ["bucketSeconds=7", "bucketSeconds=0", "from=yesterday", "size=10"]) {
      const res = await series(couponId, q);
      expect(res.status, q).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
    const unknown = await series(999_999_999);
    expect(unknown.status).toBe(404);
    expect(errorCode(unknown)).toBe("COUPON_NOT_FOUND");
    expect((await api.get(`/api/v1/admin/coupons/${couponId}/issuances`)).status).toBe(401);
  });
});
