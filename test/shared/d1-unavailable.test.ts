import { afterEach, describe, expect, it, vi } from "vitest";
import { isTransientD1Error, transientD1Cause } from "../../src/shared/d1-errors";
import { createProduct, createUser, errorCode } from "../support/http";
import { testApp } from "../support/secure-app";

/**
 * A D1 binding whose every query and batch throws `D1_ERROR: <message>`, the way the binding
 * reports a database that is overloaded, resetting or out of reach (Cloudflare's "Debug D1"
 * error list). Sessions are handed out as usual, so the failure hits the route's own query.
 */
function failingD1(message: string): D1Database {
  const fail = () => Promise.reject(new Error(`D1_ERROR: ${message}`));
  const statement: Record<string, unknown> = { first: fail, all: fail, run: fail, raw: fail };
  statement.bind = () => statement;
  const session = { prepare: () => statement, batch: fail, getBookmark: () => null };
  return { prepare: () => statement, batch: fail, exec: fail, dump: fail, withSession: () => session } as unknown as D1Database;
}

/** Every console line of a level, parsed (the logger writes one JSON object per line). */
function captureLogs() {
  const lines: { level: string; msg: string; errMessage?: string }[] = [];
  for (const method of ["error", "warn"] as const) {
    vi.spyOn(console, method).mockImplementation((line: unknown) => void lines.push(JSON.parse(String(line))));
  }
  return lines;
}

/** D1's own transient messages, as the binding words them, plus the object-reset wording of a Durable Object. */
const TRANSIENT = [
  "D1 DB is overloaded. Requests queued for too long.",
  "D1 DB is overloaded. Too many requests queued.",
  "D1 DB reset because its code was updated.",
  "Durable Object reset because its code was updated.",
  "Internal error while starting up D1 DB storage caused object to be reset.",
  "Internal error in D1 DB storage caused object to be reset.",
  "D1 DB storage operation exceeded timeout which caused object to be reset.",
  "Network connection lost.",
  "Cannot resolve D1 DB due to transient issue on remote node.",
  "Can't read from request stream because client disconnected.",
];

afterEach(() => vi.restoreAllMocks());

describe("isTransientD1Error", () => {
  it("knows every transient message, also wrapped as the cause of a query builder's error", () => {
    for (const message of TRANSIENT) {
      const raw = new Error(`D1_ERROR: ${message}`);
      expect(isTransientD1Error(raw), message).toBe(true);
      const wrapped = new Error("Failed query: select 1", { cause: raw });
      expect(isTransientD1Error(wrapped), `wrapped: ${message}`).toBe(true);
      expect(transientD1Cause(wrapped), `the cause with D1's words: ${message}`).toBe(raw);
    }
  });

  it("leaves a real bug alone: SQL errors, constraint failures, a CPU-limit reset caused by the query itself", () => {
    for (const message of [
      "D1_ERROR: no such table: nope: SQLITE_ERROR",
      "D1_ERROR: CHECK constraint failed: balance_nonnegative: SQLITE_CONSTRAINT",
      "D1_ERROR: D1 DB exceeded its CPU time limit and was reset.",
      "D1_TYPE_ERROR: Type 'undefined' not supported for value 'undefined'",
    ]) {
      expect(isTransientD1Error(new Error(message)), message).toBe(false);
    }
    expect(isTransientD1Error("Network connection lost.")).toBe(false); // not an Error: nothing D1 threw
    expect(isTransientD1Error(undefined)).toBe(false);
  });
});

describe("a transient D1 failure is 503 with Retry-After, logged as a warning, never a 500", () => {
  for (const message of TRANSIENT) {
    it(`balance read, charge and catalogue read: "${message}"`, async () => {
      const userId = await createUser(1_000);
      const productId = await createProduct(100, 5);
      const app = testApp({ DB: failingD1(message) } as unknown as Record<string, string>);
      const logs = captureLogs();

      for (const res of [
        await app.get(`/api/v1/points?userId=${userId}`),
        await app.post("/api/v1/points/charge", { userId, amount: 10 }),
        await app.get(`/api/v1/products/${productId}`),
      ]) {
        expect(res.status).toBe(503);
        expect(errorCode(res)).toBe("SERVICE_UNAVAILABLE");
        expect(res.headers.get("retry-after")).toBe("1");
      }
      expect(
        logs.filter((l) => l.msg === "unhandled error"),
        "no error-level 'unhandled error' line",
      ).toEqual([]);
      const warned = logs.filter((l) => l.level === "warn" && l.msg === "service unavailable");
      expect(warned).toHaveLength(3);
      // The warning keeps D1's own words (looked up through the query builder's wrapper), not only "Failed query".
      for (const w of warned) expect(w.errMessage).toBe(`D1_ERROR: ${message}`);
    });
  }

  it("a D1 error that is not transient stays a 500 with an error-level log (a bug must stay visible)", async () => {
    const userId = await createUser(1_000);
    const app = testApp({ DB: failingD1("no such table: user_balances: SQLITE_ERROR") } as unknown as Record<string, string>);
    const logs = captureLogs();
    const res = await app.get(`/api/v1/points?userId=${userId}`);
    expect(res.status).toBe(500);
    expect(errorCode(res)).toBe("INTERNAL_ERROR");
    expect(logs.filter((l) => l.level === "error" && l.msg === "unhandled error")).toHaveLength(1);
  });
});
