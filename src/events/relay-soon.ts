import type { RelayResult } from "./outbox.relay";

/**
 * Coalesces the relays that commits ask for, per Worker isolate: at most one
 * relay runs at a time, and requests that arrive while it runs are served by
 * one more run after it (which sees every row committed before it started).
 * Without this, a storm of payments started one relay per payment, each
 * claiming and marking rows in its own D1 writes: three background D1
 * transactions per payment competing with the payments themselves. Delivery
 * stays at least once and prompt; the every-minute cron is the safety net.
 */
export class RelaySoon {
  private running: Promise<RelayResult> | undefined;
  private again = false;
  private relay: () => Promise<RelayResult> = async () => ({ published: 0, failed: 0 });

  /**
   * Asks for a relay (the latest caller's `relay` is the one run next: its transport and
   * clock); resolves when a run that started after this call has finished.
   */
  request(relay: () => Promise<RelayResult>): Promise<RelayResult> {
    this.relay = relay;
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async loop(): Promise<RelayResult> {
    const total: RelayResult = { published: 0, failed: 0 };
    do {
      this.again = false;
      const r = await this.relay();
      total.published += r.published;
      total.failed += r.failed;
      if (r.failed > 0) break; // the transport is failing: leave the rest to the cron's backoff
    } while (this.again);
    return total;
  }
}
