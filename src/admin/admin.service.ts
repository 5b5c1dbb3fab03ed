import type { AdminRepo } from "./admin.repo";

/**
 * Admin use cases that belong to no other context: creating a user with an opening balance. (Coupons and
 * products are created through their own services; the admin lists and counters are read models that read
 * their repos directly, with no rule to apply.)
 */
export class AdminService {
  constructor(private readonly deps: { repo: AdminRepo; clock: () => number }) {}

  /** A user and its balance row (and a CHARGE history row for a non-zero opening balance), in one batch. */
  async createUser(input: { name: string; initialBalance?: number }): Promise<{ userId: number }> {
    const userId = await this.deps.repo.createUser(input.name, input.initialBalance ?? 0, this.deps.clock());
    return { userId };
  }
}
