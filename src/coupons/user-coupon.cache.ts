import type { Config } from "../config";
import { createRedis, tryRedis, type RedisLanes } from "../infra/redis";
import type { UserCouponRow } from "./coupons.repo";

/** Owned-coupon lists live 30 minutes in Redis. */
export const USER_COUPONS_TTL_SECONDS = 30 * 60;

/** The eviction counter outlives any cached list (30 min) by far; refreshed on every eviction. */
const GENERATION_TTL_SECONDS = 86_400;

/** A read: the cached rows (or a miss) and the eviction generation seen, to hand back to `set`. */
export interface UserCouponRead {
  rows: UserCouponRow[] | undefined;
  /** Undefined when Redis did not answer: then nothing is written back. */
  generation: string | undefined;
}

/**
 * `userCoupons:{userId}`: a user's owned-coupon rows (raw instants; the status
 * is computed at read time, so expiry never needs an eviction). Evicted on
 * issue (by the CouponIssuer DO once the D1 row exists), on use and on restore.
 * Every eviction also bumps `userCoupons:{userId}:gen`, and a refill is written
 * only while that generation is still the one read before D1 was (`set` is one
 * atomic compare-and-set script), so a list read before a concurrent eviction
 * never lands in the cache after it. Best effort: a Redis failure means "miss"
 * and the caller reads D1.
 */
export interface UserCouponCache {
  get(userId: number): Promise<UserCouponRead>;
  set(userId: number, rows: UserCouponRow[], generation: string | undefined): Promise<void>;
  evict(userIds: number[]): Promise<void>;
}

export const noUserCouponCache: UserCouponCache = {
  get: async () => ({ rows: undefined, generation: undefined }),
  set: async () => {},
  evict: async () => {},
};

/** SET the list only if the generation is unchanged (KEYS: list, gen; ARGV: generation, json, ttl). */
const SET_IF_GENERATION = `if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0`;

/**
 * Reads and refills run on a request's path (the request lane); evictions run on the lane of
 * whoever evicts: a request's own eviction (read-your-writes before its answer) on the request
 * lane, the objects' and the crons' on the background lane (a longer timeout and a retry: a
 * lost eviction leaves a stale list for up to 30 minutes).
 */
export function redisUserCouponCache(lanes: RedisLanes, prefix: string, evictOn: keyof RedisLanes = "request"): UserCouponCache {
  const key = (userId: number) => `${prefix}userCoupons:${userId}`;
  const gen = (userId: number) => `${prefix}userCoupons:${userId}:gen`;
  return {
    async get(userId) {
      const hit = await tryRedis(lanes.request, "userCoupons.get", (redis) =>
        redis.mget<[UserCouponRow[] | null, number | string | null]>(key(userId), gen(userId)),
      );
      if (!hit) return { rows: undefined, generation: undefined };
      return { rows: hit[0] ?? undefined, generation: String(hit[1] ?? 0) };
    },
    async set(userId, rows, generation) {
      if (generation === undefined) return;
      await tryRedis(lanes.request, "userCoupons.set", (redis) =>
        redis.eval(SET_IF_GENERATION, [key(userId), gen(userId)], [generation, JSON.stringify(rows), String(USER_COUPONS_TTL_SECONDS)]),
      );
    },
    async evict(userIds) {
      if (userIds.length === 0) return;
      await tryRedis(lanes[evictOn], "userCoupons.evict", async (redis) => {
        const m = redis.multi();
        for (const u of userIds) {
          m.incr(gen(u));
          m.expire(gen(u), GENERATION_TTL_SECONDS);
        }
        m.del(...userIds.map(key));
        await m.exec();
      });
    },
  };
}

/** The cache as a background caller (a Durable Object) uses it: evictions on the background lane. */
export function createUserCouponCache(config: Config): UserCouponCache {
  const lanes = createRedis(config);
  return lanes ? redisUserCouponCache(lanes, config.redisKeyPrefix, "background") : noUserCouponCache;
}
