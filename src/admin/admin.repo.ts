/** D1 writes only the admin API performs. */
export class AdminRepo {
  constructor(private readonly d1: D1Database) {}

  /**
   * Creates a user with a balance row (and a CHARGE history row for a non-zero
   * initial balance) in one batch, so a user never exists without a balance.
   * `last_insert_rowid()` is safe here: a batch runs on one connection, in order.
   */
  async createUser(name: string, initialBalance: number, at: number): Promise<number> {
    const [, balanceRows] = await this.d1.batch<{ user_id: number }>([
      this.d1.prepare("INSERT INTO users (name, created_at) VALUES (?1, ?2)").bind(name, at),
      this.d1
        .prepare("INSERT INTO user_balances (user_id, balance, updated_at) VALUES (last_insert_rowid(), ?1, ?2) RETURNING user_id")
        .bind(initialBalance, at),
      this.d1
        .prepare(
          `INSERT INTO point_history (user_id, type, amount, balance_after, order_id, created_at)
           SELECT user_id, 'CHARGE', balance, balance, NULL, ?1 FROM user_balances
           WHERE user_id = last_insert_rowid() AND balance > 0`,
        )
        .bind(at),
    ]);
    const id = balanceRows?.results[0]?.user_id;
    if (id === undefined) throw new Error("createUser: no id returned");
    return id;
  }
}
