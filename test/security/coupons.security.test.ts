import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createCoupon, createUser, errorCode } from "../support/http";
import { badTokens, bearer, JWT_SECRET, testApp, tokenFor } from "../support/secure-app";

const app = testApp({ JWT_SECRET });

/** What a refused issuance must not have changed: D1 rows and the DO's own list. */
async function couponState(couponId: number) {
  const rows = await env.DB.prepare("SELECT count(*) AS n FROM user_coupons WHERE coupon_id = ?").bind(couponId).first<number>("n");
  const issuer = await env.COUPON_ISSUER.get(env.COUPON_ISSUER.idFromName(String(couponId))).state();
  return { rows, issued: issuer.issued };
}

describe("coupon routes with JWT_SECRET set", () => {
  let userId = 0;
  let otherId = 0;
  let couponId = 0;
  beforeAll(async () => {
    userId = await createUser(0);
    otherId = await createUser(0);
    couponId = await createCoupon({ quantity: 10 });
  });

  it("answers 401 for every bad token on issue, issue-by-path and list, and issues nothing", async () => {
    const before = await couponState(couponId);
    for (const [name, headers] of await badTokens(userId)) {
      for (const res of [
        await app.post("/api/v1/coupons/issue", { userId, couponId }, headers),
        await app.post(`/api/v1/coupons/${couponId}/issue`, { userId }, headers),
        await app.get(`/api/v1/coupons?userId=${userId}`, headers),
      ]) {
        expect(res.status, name).toBe(401);
        expect(errorCode(res), name).toBe("UNAUTHORIZED");
        expect(res.headers.get("www-authenticate"), name).toMatch(/^Bearer/);
      }
    }
    expect(await couponState(couponId)).toEqual(before);
  });

  it("answers 403 for someone else's userId in the body or the query, and issues nothing", async () => {
    const before = await couponState(couponId);
    const mine = bearer(await tokenFor(userId));
    for (const res of [
      await app.post("/api/v1/coupons/issue", { userId: otherId, couponId }, mine),
      await app.post(`/api/v1/coupons/${couponId}/issue`, { userId: otherId }, mine),
      await app.get(`/api/v1/coupons?userId=${otherId}`, mine),
    ]) {
      expect(res.status).toBe(403);
      expect(errorCode(res)).toBe("FORBIDDEN");
    }
    expect(await couponState(couponId)).toEqual(before);
  });

  it("issues to and lists for the token's own user", async () => {
    const mine = bearer(await tokenFor(userId));
    const issued = await app.post(`/api/v1/coupons/${couponId}/issue`, { userId }, mine);
    expect(issued.status).toBe(201);
    expect(issued.body.data).toMatchObject({ couponId, userId });
    const listed = await app.get(`/api/v1/coupons?userId=${userId}`, mine);
    expect(listed.status).toBe(200);
    expect(listed.body.data.coupons.map((c: { couponId: number }) => c.couponId)).toEqual([couponId]);
  });

  it("never lets an idempotent replay skip identity: another user's token on the same key is 403", async () => {
    const second = await createCoupon();
    const key = { "idempotency-key": "issue-once" };
    const mine = bearer(await tokenFor(otherId));
    const first = await app.post("/api/v1/coupons/issue", { userId: otherId, couponId: second }, { ...mine, ...key });
    expect(first.status).toBe(201);
    const stranger = bearer(await tokenFor(userId));
    const stolen = await app.post("/api/v1/coupons/issue", { userId: otherId, couponId: second }, { ...stranger, ...key });
    expect(stolen.status).toBe(403);
    const replay = await app.post("/api/v1/coupons/issue", { userId: otherId, couponId: second }, { ...mine, ...key });
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await couponState(second)).toEqual({ rows: 1, issued: 1 });
  });
});
