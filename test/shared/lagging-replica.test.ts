import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { createDb } from "../../src/db/client";
import { OrdersRepo } from "../../src/orders/orders.repo";
import { PointsRepo } from "../../src/points/points.repo";
import { IdempotencyRepo } from "../../src/shared/idempotency.repo";
import { createProduct, createUser } from "../support/http";
import { balanceOf, orderRow, placedOrderId } from "../support/orders";

/**
 * Reads that must see the latest commit run on the primary, never on the request's
 * session. A `withSession("first-primary")` session pins only its first query to the
 * primary; later reads may come from a replica that has not seen a commit yet. Local
 * D1 has no replica, so this file builds one: a session whose reads, once frozen,
 * answer from the snapshot taken before the commit (a replica that stopped replicating),
 * while its writes reach the real database, and whose next batch's answer can be lost
 * after it was applied.
 */
function laggingReplica(real: D1Database) {
  const snapshot = new Map<string, unknown>();
  const state = { frozen: false, loseNextBatch: false };
  const isRead = (sql: string) => /^\s*select\b/i.test(sql);

  class Statement {
    constructor(
      readonly sql: string,
      readonly params: unknown[] = [],
    ) {}
    bind(...params: unknown[]) {
      return new Statement(this.sql, params);
    }
    get inner(): D1PreparedStatement {
      return real.prepare(this.sql).bind(...this.params);
    }
    /** Every read is answered from one `all()` result per SQL and parameters, however it is asked for. */
    private async read(): Promise<D1Result<Record<string, unknown>>> {
      if (!isRead(this.sql)) return this.inner.all();
      const key = `${this.sql} ${JSON.stringify(this.params)}`;
      if (state.frozen && snapshot.has(key)) return snapshot.get(key) as D1Result<Record<string, unknown>>;
      const result = await this.inner.all<Record<string, unknown>>();
      if (!state.frozen) snapshot.set(key, result);
      return result;
    }
    all() {
      return this.read();
    }
    run() {
      return isRead(this.sql) ? this.read() : this.inner.run();
    }
    async first(col?: string) {
      const row = (await this.read()).results[0] ?? null;
      return col === undefined || row === null ? row : (row[col] ?? null);
    }
    async raw(options?: { columnNames: true }) {
      const rows = (await this.read()).results;
      const values = rows.map((r) => Object.values(r));
      return options?.columnNames ? [Object.keys(rows[0] ?? {}), ...values] : values;
    }
  }

  const session = {
    prepare: (sql: string) => new Statement(sql),
    batch: async (statements: Statement[]) => {
      const results = await real.batch(statements.map((s) => s.inner));
      if (state.loseNextBatch) {
        state.loseNextBatch = false;
        throw new Error("D1_ERROR: Network connection lost");
      }
      return results;
    },
    getBookmark: () => null,
  };
  const db = {
    withSession: () => session,
    prepare: (sql: string) => real.prepare(sql),
    batch: (s: D1PreparedStatement[]) => real.batch(s),
  } as unknown as D1Database;
  return { db, session: session as unknown as D1Database, state };
}

async function call(appEnv: Env, method: string, path: string, json: unknown, headers: Record<string, string> = {}) {
  const ctx = createExecutionContext();
  const res = await createApp().request(
    `http://example.com${path}`,
    { method, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(json) },
    appEnv,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: (await res.json()) as any };
}

describe("read-backs after an ambiguous commit read the primary", () => {
  it("answers 200 PAID for a committed payment whose answer was lost, while the session's replica still shows NOT_PAID", async () => {
    const userId = await createUser(50_000);
    const productId = await createProduct(1_000, 10);
    const orderId = await placedOrderId(userId, [[productId, 2]]);
    const replica = laggingReplica(env.DB);
    // The replica's snapshot: the order unpaid, its lines and the balance before the payment.
    const orders = new OrdersRepo(replica.session);
    expect((await orders.findOrder(orderId))?.status).toBe("NOT_PAID");
    await orders.findItems(orderId);
    await new PointsRepo(createDb(replica.session), replica.session).findBalance(userId);
    replica.state.frozen = true;
    replica.state.loseNextBatch = true;

    const res = await call({ ...env, DB: replica.db }, "POST", "/api/v1/points/use", { userId, orderId });

    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data).toMatchObject({ orderId, status: "PAID", paidAmount: 2_000, balance: 48_000 });
    expect((await orderRow(orderId))!.status).toBe("PAID");
    expect(await balanceOf(userId)).toBe(48_000);
  });

  it("answers 201 for a committed placement whose answer was lost, while the session's replica still shows PENDING", async () => {
    const userId = await createUser(50_000);
    const productId = await createProduct(1_000, 10);
    const replica = laggingReplica(env.DB);
    // Every read of this order the session would make is frozen before it exists (or while PENDING):
    // freeze reads as soon as the attempt batch has run, then lose the commit's answer.
    const batch = replica.session.batch.bind(replica.session);
    let batches = 0;
    (replica.session as unknown as { batch: typeof batch }).batch = async (statements) => {
      batches++;
      if (batches === 2) {
        // The commit: snapshot the PENDING order through the session first, then apply and lose the answer.
        const pendingId = (await env.DB.prepare("SELECT max(id) AS id FROM orders WHERE user_id = ?1")
          .bind(userId)
          .first<{ id: number }>())!.id;
        await new OrdersRepo(replica.session).findOrder(pendingId);
        replica.state.frozen = true;
        replica.state.loseNextBatch = true;
      }
      return batch(statements);
    };

    const res = await call({ ...env, DB: replica.db }, "POST", "/api/v1/orders", { userId, orderProducts: [{ productId, quantity: 3 }] });

    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect((await orderRow(res.body.data.orderId))!.status).toBe("NOT_PAID");
  });

  it("replays a keyed charge's stored answer to its twin even when the session's replica has not seen the key", async () => {
    const userId = await createUser(0);
    const key = crypto.randomUUID();
    const replica = laggingReplica(env.DB);
    // The replica last saw no key for this user.
    expect(await new IdempotencyRepo(replica.session).find(userId, key)).toBeNull();
    replica.state.frozen = true;
    const first = await call(env, "POST", "/api/v1/points/charge", { userId, amount: 700 }, { "Idempotency-Key": key });
    expect(first.status).toBe(200);

    const twin = await call(
      { ...env, DB: replica.db },
      "POST",
      "/api/v1/points/charge",
      { userId, amount: 700 },
      { "Idempotency-Key": key },
    );

    expect(twin.status, JSON.stringify(twin.body)).toBe(200);
    expect(twin.body.data).toEqual(first.body.data);
    expect(await balanceOf(userId)).toBe(700);
  });
});
