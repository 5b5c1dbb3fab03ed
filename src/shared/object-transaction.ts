/**
 * A Durable Object's rollback-aware transaction: one synchronous `transactionSync`, and when it
 * throws (SQLite rolled it back) the object's memory copies of its rows are dropped before the
 * error goes on, so no copy outlives the write it mirrored. Both shard objects use it.
 */
export type Transaction = <T>(body: () => T) => T;

/** The transaction of `storage`; `rolledBack` drops (or re-reads) every memory copy of stored rows. */
export function rollbackAwareTransaction(storage: DurableObjectStorage, rolledBack: () => void): Transaction {
  return <T>(body: () => T): T => {
    try {
      return storage.transactionSync(body);
    } catch (err) {
      rolledBack();
      throw err;
    }
  };
}
