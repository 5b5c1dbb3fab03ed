import { describe, expect, it } from "vitest";
import { decideGrant, fairShare, homeShard, orderShard, provesDry, shardObjectName, type GiveAnswer } from "../../src/shared/sharded-quantity";

const answers = (...xs: Partial<GiveAnswer>[]) => ({
  answers: new Map(xs.map((x, i) => [i + 1, { granted: 0, available: 0, moves: 0, unacked: 0, ...x }])),
});

describe("sharded-quantity pure rules", () => {
  it("K = 1 is the object of before: shard 0, named by the bare id", () => {
    expect(orderShard(12345, 1)).toBe(0);
    expect(homeShard(12345, 1)).toBe(0);
    expect(shardObjectName(7, 0)).toBe("7");
    expect(shardObjectName(7, 3)).toBe("7/3");
  });

  it("deals consecutive orders round-robin over the shards, as the placement SQL does (order_id % K)", () => {
    expect(Array.from({ length: 8 }, (_, i) => orderShard(100 + i, 4))).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
    for (let u = 1; u < 200; u++) expect(homeShard(u, 8)).toBe(homeShard(u, 8));
    expect(new Set(Array.from({ length: 200 }, (_, u) => homeShard(u + 1, 8))).size).toBe(8);
  });

  it("a fair share is at least 1 and covers the total", () => {
    expect(fairShare(300, 8)).toBe(38);
    expect(fairShare(0, 8)).toBe(1);
    expect(fairShare(5, 0)).toBe(5);
  });

  it("a giver hands over the need it can cover and at most half of what it would keep as a batch, never more than it holds", () => {
    expect(decideGrant(40, 5, 20)).toBe(5 + 17);
    expect(decideGrant(40, 0, 100)).toBe(20);
    expect(decideGrant(3, 5, 20)).toBe(3);
    expect(decideGrant(0, 5, 20)).toBe(0);
    expect(decideGrant(10, -1, -1)).toBe(0);
    for (let a = 0; a < 30; a++) for (const [n, e] of [[0, 0], [3, 7], [50, 50]] as const) expect(decideGrant(a, n, e)).toBeLessThanOrEqual(a);
  });

  it("proves dryness only from two rounds in which every sibling held, granted and owed nothing and none moved", () => {
    expect(provesDry(answers({}, {}), answers({}, {}))).toBe(true);
    expect(provesDry(answers({}, { moves: 1 }), answers({}, { moves: 2 }))).toBe(false);
    expect(provesDry(answers({}, { available: 1 }), answers({}, {}))).toBe(false);
    expect(provesDry(answers({}, {}), answers({}, { unacked: 1 }))).toBe(false);
    expect(provesDry(answers({}, {}), answers({ granted: 1 }, {}))).toBe(false);
    expect(provesDry(answers({}), answers({}, {}))).toBe(false);
  });
});
