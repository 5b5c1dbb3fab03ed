import type { Redis } from "@upstash/redis/cloudflare";
import type { Config } from "../config";
import { createRedis, tryRedis } from "../infra/redis";
import type { UserCouponRow } from "./coupons.repo";

/** Owned-coupon lists live 30 minutes in Redis. */
export const USER_COUPONS_TTL_SECONDS = 30 * 60;

/**
 * `userCoupons:{userId}`: a user's owned-coupon rows (raw instants; the status
 * is computed at read time, so expiry never needs an eviction). Evicted on
 * issue (by the CouponIssuer DO once the D1 row exists), on use and on restore.
 * Best effort: a Redis failure means "miss" and the caller reads D1.
 */
export interface UserCouponCache {
  get(userId: number): Promise<UserCouponRow[] | undefined>;
  set(userId: number, rows: UserCouponRow[]): Promise<void>;
  evict(userIds: number[]): Promise<void>;
}

export const noUserCouponCache: UserCouponCache = {
  get: async () => undefined,
  set: async () => {},
  evict: async () => {},
};

export function redisUserCouponCache(redis: Redis, prefix: string): UserCouponCache {
  const key = (userId: number) => `${prefix}userCoupons:${userId}`;
  return {
    async get(userId) {
      const hit = await tryRedis("userCoupons.get", () => redis.get<UserCouponRow[]>(key(userId)));
      return hit ?? undefined;
    },
    async set(userId, rows) {
      await tryRedis("userCoupons.set", () => redis.set(key(userId), rows, { ex: USER_COUPONS_TTL_SECONDS }));
    },
    async evict(userIds) {
      if (userIds.length === 0) return;
      await tryRedis("userCoupons.evict", () => redis.del(...userIds.map(key)));
    },
  };
}

export function createUserCouponCache(config: Config): UserCouponCache {
  const redis = createRedis(config);
  return redis ? redisUserCouponCache(redis, config.redisKeyPrefix) : noUserCouponCache;
}
