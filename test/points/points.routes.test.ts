import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createUser, errorCode } from "../support/http";

describe("POST /api/v1/points/charge", () => {
  it("adds the amount, returns the balance and writes one CHARGE history row", async () => {
    const userId = await createUser(1_000);
    const res = await api.post("/api/v1/points/charge", { userId, amount: 2_500 });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ code: 200, message: "요청이 정상적으로 처리되었습니다.", data: { userId, balance: 3_500 } });
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const history = await env.DB.prepare("SELECT type, amount, balance_after FROM point_history WHERE user_id = ? ORDER BY id")
      .bind(userId)
      .all();
    expect(history.results).toEqual([
      { type: "CHARGE", amount: 1_000, balance_after: 1_000 },
      { type: "CHARGE", amount: 2_500, balance_after: 3_500 },
    ]);
  });

  it("accepts exactly 1,000,000 and refuses 1,000,001 with CHARGE_LIMIT_EXCEEDED", async () => {
    const userId = await createUser();
    expect((await api.post("/api/v1/points/charge", { userId, amount: 1_000_000 })).status).toBe(200);
    const res = await api.post("/api/v1/points/charge", { userId, amount: 1_000_001 });
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("CHARGE_LIMIT_EXCEEDED");
    expect(res.body.message).toBe("비즈니스 정책을 위반한 요청입니다.");
    expect((await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance).toBe(1_000_000);
  });

  it("refuses a charge that would cross 5,000,000 with BALANCE_LIMIT_EXCEEDED and changes nothing", async () => {
    const userId = await createUser(4_500_000);
    const res = await api.post("/api/v1/points/charge", { userId, amount: 500_001 });
    expect(res.status).toBe(409);
    expect(errorCode(res)).toBe("BALANCE_LIMIT_EXCEEDED");
    expect((await api.get(`/api/v1/points?userId=${userId}`)).body.data.balance).toBe(4_500_000);
    const count = await env.DB.prepare("SELECT count(*) AS n FROM point_history WHERE user_id = ?").bind(userId).first("n");
    expect(count).toBe(1);
    // Reaching the cap exactly is allowed.
    expect((await api.post("/api/v1/points/charge", { userId, amount: 500_000 })).body.data.balance).toBe(5_000_000);
  });

  it("answers 404 USER_NOT_FOUND for an unknown user", async () => {
    const res = await api.post("/api/v1/points/charge", { userId: 987_654, amount: 10 });
    expect(res.status).toBe(404);
    expect(errorCode(res)).toBe("USER_NOT_FOUND");
  });

  it.each([
    [0, "INVALID_CHARGE_AMOUNT"],
    [-5, "INVALID_CHARGE_AMOUNT"],
    [1.5, "INVALID_CHARGE_AMOUNT"],
  ])("answers 400 for amount %s", async (amount, code) => {
    const userId = await createUser();
    const res = await api.post("/api/v1/points/charge", { userId, amount });
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe(code);
  });
});

describe("GET /api/v1/points", () => {
  it("returns the balance", async () => {
    const userId = await createUser(777);
    const res = await api.get(`/api/v1/points?userId=${userId}`);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ userId, balance: 777 });
  });

  it("answers 404 for an unknown user and 400 INVALID_USER_ID for a bad id", async () => {
    expect(errorCode(await api.get("/api/v1/points?userId=55555"))).toBe("USER_NOT_FOUND");
    for (const bad of ["0", "-1", "1.5", "abc", "9007199254740993", ""]) {
      const res = await api.get(`/api/v1/points?userId=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(errorCode(res), bad).toBe("INVALID_USER_ID");
    }
    const missing = await api.get("/api/v1/points");
    expect(missing.status).toBe(400);
    expect(errorCode(missing)).toBe("VALIDATION_FAILED");
  });
});

describe("GET /api/v1/points/history", () => {
  it("pages through history oldest first with an opaque cursor", async () => {
    const userId = await createUser();
    for (const amount of [1, 2, 3, 4, 5]) await api.post("/api/v1/points/charge", { userId, amount });
    const first = await api.get(`/api/v1/points/history?userId=${userId}&limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.data.items.map((i: any) => i.amount)).toEqual([1, 2]);
    expect(first.body.data.items[1]).toMatchObject({ type: "CHARGE", balanceAfter: 3, orderId: null });
    expect(Date.parse(first.body.data.items[0].createdAt)).not.toBeNaN();
    const second = await api.get(`/api/v1/points/history?userId=${userId}&limit=2&cursor=${first.body.data.nextCursor}`);
    expect(second.body.data.items.map((i: any) => i.amount)).toEqual([3, 4]);
    const third = await api.get(`/api/v1/points/history?userId=${userId}&limit=2&cursor=${second.body.data.nextCursor}`);
    expect(third.body.data.items.map((i: any) => i.amount)).toEqual([5]);
    expect(third.body.data.nextCursor).toBeNull();
  });

  it("rejects a limit outside 1..100 and a forged cursor", async () => {
    const userId = await createUser();
    for (const limit of ["0", "101", "x"]) {
      const res = await api.get(`/api/v1/points/history?userId=${userId}&limit=${limit}`);
      expect(res.status, limit).toBe(400);
      expect(errorCode(res)).toBe("VALIDATION_FAILED");
    }
    const forged = await api.get(`/api/v1/points/history?userId=${userId}&cursor=abc`);
    expect(forged.status).toBe(400);
    expect(errorCode(forged)).toBe("VALIDATION_FAILED");
  });

  it("answers 404 for an unknown user", async () => {
    expect(errorCode(await api.get("/api/v1/points/history?userId=424242"))).toBe("USER_NOT_FOUND");
  });
});
