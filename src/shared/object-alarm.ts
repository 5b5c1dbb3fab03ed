/**
 * A Durable Object's one alarm, as the object itself last set it. Owns the memory copy of the
 * stored alarm time: only the object sets or deletes its alarm, so the copy saves a storage read
 * per change (both shard objects, CouponIssuer and ProductStock, arm theirs through this).
 */
export class ObjectAlarm {
  /** The stored alarm time (null: none; undefined: not read yet). */
  private at: number | null | undefined;

  constructor(private readonly storage: DurableObjectStorage) {}

  /** Reads the stored alarm (once, in the object's constructor); returns it. */
  async load(): Promise<number | null> {
    this.at = await this.storage.getAlarm();
    return this.at;
  }

  /** The alarm that fired is spent (call first thing in `alarm()`). */
  fired(): void {
    this.at = null;
  }

  /** Arms the alarm no later than `at`: an earlier pending alarm is kept, so a storm cannot postpone it. */
  async armBy(at: number): Promise<void> {
    this.at ??= await this.storage.getAlarm();
    if (this.at === null || this.at > at) {
      await this.storage.setAlarm(at);
      this.at = at;
    }
  }

  /** Sets the alarm to exactly `at` (a re-arm after the alarm ran, or at start-up with none pending). */
  async set(at: number): Promise<void> {
    await this.storage.setAlarm(at);
    this.at = at;
  }

  /** Leaves no alarm behind. */
  async clear(): Promise<void> {
    this.at ??= await this.storage.getAlarm();
    if (this.at !== null) await this.storage.deleteAlarm();
    this.at = null;
  }
}
