import type { ShardValue } from "./stock-projection";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sibling_projections (
  shard INTEGER PRIMARY KEY,
  available INTEGER NOT NULL,
  stamp INTEGER NOT NULL
);
`;

/**
 * Owns the `sibling_projections` table of a product's shard 0: the newest value each
 * sibling shard handed over for shard 0's next D1 projection batch (StockProjector).
 * A row is kept until D1 holds its value or a newer one, so a crash of shard 0 between
 * taking a value and writing it loses nothing. Every method is synchronous and runs
 * inside the object's `transactionSync` (StockShardStore.tx).
 */
export class SiblingProjections {
  private count: number | undefined;

  constructor(private readonly sql: SqlStorage) {}

  /** Creates the table (idempotent; an object made before it gets it on its next start). */
  createSchema(): void {
    this.sql.exec(SCHEMA);
    this.count = undefined;
  }

  /** Forgets the memory copy (after a transaction rolled back). */
  invalidate(): void {
    this.count = undefined;
  }

  /** Keeps `value` unless a newer one (by stamp) is already held: a late or repeated hand-over never replaces it. */
  note(value: ShardValue): void {
    this.sql.exec(
      `INSERT INTO sibling_projections (shard, available, stamp) VALUES (?, ?, ?)
       ON CONFLICT (shard) DO UPDATE SET available = excluded.available, stamp = excluded.stamp WHERE excluded.stamp > sibling_projections.stamp`,
      value.shard,
      value.available,
      value.stamp,
    );
    this.count = undefined;
  }

  /** The values waiting for D1, one per sibling. */
  pending(): ShardValue[] {
    return this.sql
      .exec<{ shard: number; available: number; stamp: number }>("SELECT shard, available, stamp FROM sibling_projections ORDER BY shard")
      .toArray();
  }

  hasPending(): boolean {
    this.count ??= this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM sibling_projections").one().n;
    return this.count > 0;
  }

  /** D1 holds these values (or newer ones): drops them, but not a newer value that arrived while they were written. */
  written(values: ShardValue[]): void {
    for (const v of values) this.sql.exec("DELETE FROM sibling_projections WHERE shard = ? AND stamp <= ?", v.shard, v.stamp);
    this.count = undefined;
  }
}
