/**
 * The pure rules of moving units (docs/SHARDING.md, "Shard 0 is the reserve"): how big a
 * batch is and how much a giver hands over. No storage, no I/O: the ledger and the
 * balancer call these inside their transactions.
 */

/** A fair batch of `total` over `shards` (what a shard borrows beyond its need). */
export function fairShare(total: number, shards: number): number {
  return Math.max(1, Math.ceil(total / Math.max(1, shards)));
}

/**
 * How much a giver hands over when asked for `need` units plus a batch of
 * `extra`: all it can of the need, and of the batch at most half of what it
 * would keep (so two hungry shards cannot strip each other bare, and a giver
 * asked by every sibling keeps a share). Pure; never more than `available`.
 */
export function decideGrant(available: number, need: number, extra: number): number {
  if (available <= 0) return 0;
  const forNeed = Math.min(available, Math.max(0, need));
  const forExtra = Math.min(Math.max(0, extra), Math.floor((available - forNeed) / 2));
  return forNeed + forExtra;
}
