/**
 * Cloudflare Workers limits one invocation (a request, a cron run) must stay inside.
 * Paid plan: 1,000 subrequests per invocation, and every D1 call (query or batch) and
 * every Durable Object call counts as one; CPU time 30 s by default. Cron jobs spend
 * from a `SubrequestBudget` so that a backlog of any size is worked off in bounded
 * steps over several runs instead of failing half-way on the limit.
 */
export const SUBREQUESTS_PER_INVOCATION = 1_000;

/** A countdown of the subrequests one invocation may still make. */
export class SubrequestBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get left(): number {
    return this.limit - this.used;
  }

  get spent(): number {
    return this.used;
  }

  /** Takes `n` if they fit; false (and nothing taken) when they do not. */
  take(n: number): boolean {
    if (n > this.left) return false;
    this.used += n;
    return true;
  }
}
