import { describe, expect, it } from "vitest";
import { homeShard, mix32, orderShard, shardObjectName, siblingsOf } from "../../src/sharding/routing";
import { decideGrant, fairShare } from "../../src/sharding/rules";

describe("sharded quantity: pure rules", () => {
  it("a giver hands over all it can of the need, and of the batch at most half of what it keeps", () => {
    expect(decideGrant(0, 5, 10)).toBe(0);
    expect(decideGrant(3, 5, 10)).toBe(3); // the need first, all of it
    expect(decideGrant(10, 1, 10)).toBe(1 + 4); // 9 left: at most 4 of the batch
    expect(decideGrant(1, 1, 10)).toBe(1); // its last unit, for a need
    expect(decideGrant(10, 0, 3)).toBe(3); // a prefetch takes only the batch
    expect(decideGrant(-2, 1, 1)).toBe(0);
    for (let available = 0; available < 40; available++) {
      for (const need of [0, 1, 3, 50])
        for (const extra of [0, 2, 100]) expect(decideGrant(available, need, extra)).toBeLessThanOrEqual(available);
    }
  });

  it("an even split at creation: K - 1 shares of ceil(q / K) taken one after another from shard 0", () => {
    for (const [q, k] of [
      [10_000, 8],
      [200, 8],
      [90, 3],
      [1001, 8],
    ] as const) {
      let bank = q;
      const share = fairShare(q, k);
      const shares = siblingsOf(0, k).map(() => {
        const g = decideGrant(bank, 0, share);
        bank -= g;
        return g;
      });
      expect(shares.reduce((a, b) => a + b, 0) + bank).toBe(q);
      expect(Math.max(...shares, bank) - Math.min(...shares, bank)).toBeLessThanOrEqual(Math.ceil(share / 2));
    }
  });

  it("routing is stable and shard 0 keeps the unsharded name", () => {
    expect(homeShard(12345, 1)).toBe(0);
    expect(homeShard(12345, 8)).toBe(homeShard(12345, 8));
    expect(orderShard(17, 8)).toBe(1);
    expect(orderShard(17, 1)).toBe(0);
    expect(shardObjectName(42, 0)).toBe("42");
    expect(shardObjectName(42, 3)).toBe("42/3");
    // keys 2^32 apart do not collide
    expect(mix32(5)).not.toBe(mix32(5 + 2 ** 32));
  });
});
