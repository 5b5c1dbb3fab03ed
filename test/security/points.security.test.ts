import { beforeAll, describe, expect, it } from "vitest";
import { createProduct, createUser, errorCode, api } from "../support/http";
import { badTokens, bearer, JWT_SECRET, pointsState, testApp, tokenFor } from "../support/secure-app";

const app = testApp({ JWT_SECRET });

describe("points routes with JWT_SECRET set", () => {
  let userId = 0;
  let otherId = 0;
  beforeAll(async () => {
    userId = await createUser(10_000);
    otherId = await createUser(10_000);
  });

  it("answers 401 with WWW-Authenticate: Bearer for a missing, forged, expired or wrong-alg token on every points route, and charges nothing", async () => {
    const before = await pointsState(userId);
    for (const [name, headers] of await badTokens(userId)) {
      for (const res of [
        await app.post("/api/v1/points/charge", { userId, amount: 100 }, headers),
        await app.get(`/api/v1/points?userId=${userId}`, headers),
        await app.get(`/api/v1/points/history?userId=${userId}`, headers),
      ]) {
        expect(res.status, name).toBe(401);
        expect(errorCode(res), name).toBe("UNAUTHORIZED");
        expect(res.body.message).toBe("인증이 필요합니다.");
        expect(res.headers.get("www-authenticate"), name).toMatch(/^Bearer/);
        expect(JSON.stringify(res.body)).not.toContain("eyJ");
      }
    }
    expect(await pointsState(userId)).toEqual(before);
  });

  it("answers 403 when the token's user is not the userId in the body or the query, and changes nothing", async () => {
    const before = await pointsState(otherId);
    const mine = bearer(await tokenFor(userId));
    const cases = [
      await app.post("/api/v1/points/charge", { userId: otherId, amount: 100 }, mine),
      await app.call("POST", `/api/v1/points/charge?userId=${userId}`, { json: { userId: otherId, amount: 100 }, headers: mine }),
      await app.call("POST", `/api/v1/points/charge?userId=${otherId}`, { json: { userId, amount: 100 }, headers: mine }),
      await app.get(`/api/v1/points?userId=${otherId}`, mine),
      await app.get(`/api/v1/points?userId=${userId}&userId=${otherId}`, mine),
      await app.get(`/api/v1/points/history?userId=${otherId}`, mine),
      await app.post("/api/v1/points/charge", { amount: 100 }, mine),
      await app.post("/api/v1/points/charge", [userId, 100], mine),
    ];
    for (const res of cases) {
      expect(res.status).toBe(403);
      expect(errorCode(res)).toBe("FORBIDDEN");
      expect(res.body.message).toBe("권한이 없습니다.");
    }
    expect(await pointsState(otherId)).toEqual(before);
    expect(await pointsState(userId)).toEqual({ balance: 10_000, history: 1 });
  });

  it("serves the token's own user: charge, balance and history", async () => {
    const mine = bearer(await tokenFor(userId));
    const charged = await app.post("/api/v1/points/charge", { userId, amount: 500 }, mine);
    expect(charged.status).toBe(200);
    expect(charged.body.data).toEqual({ userId, balance: 10_500 });
    expect((await app.get(`/api/v1/points?userId=${userId}`, mine)).body.data.balance).toBe(10_500);
    const history = await app.get(`/api/v1/points/history?userId=${userId}`, mine);
    expect(history.status).toBe(200);
    expect(history.body.data.items).toHaveLength(2);
  });

  it("still answers malformed JSON with 400 VALIDATION_FAILED once the token is valid, and 401 before that", async () => {
    const mine = bearer(await tokenFor(userId));
    const authed = await app.call("POST", "/api/v1/points/charge", {
      body: '{"userId": ',
      headers: { ...mine, "content-type": "application/json" },
    });
    expect(authed.status).toBe(400);
    expect(errorCode(authed)).toBe("VALIDATION_FAILED");
    const anonymous = await app.call("POST", "/api/v1/points/charge", {
      body: '{"userId": ',
      headers: { "content-type": "application/json" },
    });
    expect(anonymous.status).toBe(401);
    const invalidAmount = await app.post("/api/v1/points/charge", { userId, amount: 0 }, mine);
    expect(errorCode(invalidAmount)).toBe("INVALID_CHARGE_AMOUNT");
  });

  it("keeps the catalogue reads public", async () => {
    const productId = await createProduct(1_000, 3);
    for (const path of ["/api/v1/products", `/api/v1/products/${productId}`, "/api/v1/products/top", "/api/v1/products/best"]) {
      expect((await app.get(path)).status, path).toBe(200);
    }
  });

  it("stays open when JWT_SECRET is unset (the local default)", async () => {
    expect((await api.get(`/api/v1/points?userId=${userId}`)).status).toBe(200);
  });
});
