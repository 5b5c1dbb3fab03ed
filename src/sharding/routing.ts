/**
 * Routing (docs/SHARDING.md, "Who holds what"). Owns where a sharded quantity lives: the one
 * address type (`ShardAddress`), the object names of a resource's shards, and which shard a
 * caller is routed to (a coupon's user by `homeShard`, an order's line by `orderShard`). Pure.
 */

/** Most shard objects per coupon or product. */
export const MAX_SHARDS = 32;

/**
 * Shard `shard` of a resource split over `shards` (K): where a call is meant to go and the
 * count the caller routed by. The one address type of both objects (a coupon's issuance, an
 * order line's reservation); the object checks the count and the index itself.
 */
export interface ShardAddress {
  shard: number;
  shards: number;
}

/** An unsharded resource: its one object, as before sharding. */
export const UNSHARDED: ShardAddress = { shard: 0, shards: 1 };

/** Murmur3's 32-bit finaliser: a bijection on 32-bit integers that mixes every input bit into every output bit. */
export function mix32(key: number): number {
  // Fold the bits above 2^32 in (ids are safe integers) so keys 2^32 apart do not collide.
  let h = (key >>> 0) ^ Math.floor(key / 0x1_0000_0000);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The shard a user belongs to (a coupon's "one per user" check is then local to
 * one object). Stable: the same user and K always give the same shard.
 */
export function homeShard(userId: number, shards: number): number {
  return shards <= 1 ? 0 : mix32(userId) % shards;
}

/**
 * The stock shard an order's line reserves on. Order ids are consecutive, so a
 * storm of orders is dealt round-robin; orders.repo computes the same expression
 * in SQL (`order_id % stock_shards`) and stores it on the line.
 */
export function orderShard(orderId: number, shards: number): number {
  return shards <= 1 ? 0 : orderId % shards;
}

/** The object name of shard `shard` of resource `id`: shard 0 keeps the unsharded name, so K = 1 is the object of before. */
export function shardObjectName(id: number, shard: number): string {
  return shard === 0 ? String(id) : `${id}/${shard}`;
}

/** Every shard of `shards` but `self`. */
export function siblingsOf(self: number, shards: number): number[] {
  return Array.from({ length: shards }, (_, s) => s).filter((s) => s !== self);
}
