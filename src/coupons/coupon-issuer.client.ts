import { callObject, HopMeter } from "../shared/hops";
import { log } from "../shared/logger";
import type { ObjectNamespace } from "../shared/object-placement";
import { homeShard, shardObjectName, type ShardAddress } from "../sharding/routing";
import type { CouponIssuer } from "./coupon-issuer.do";
import type {
  IssueOutcome,
  IssueRequest,
  IssuerCounts,
  IssuerState,
  PrimeOutcome,
  SetQuantityOutcome,
  SetShardsOutcome,
} from "./coupon-issuer.types";
import { isolateShardCounts, type ShardCountMemo } from "./sold-out";

/** The port to the per-coupon serializer (the CouponIssuer shards in production). */
export interface CouponIssuerPort {
  /** Routed to the user's home shard; never answers WRONG_SHARD (it re-routes, then says SERVICE_UNAVAILABLE). */
  issue(request: Omit<IssueRequest, "at">): Promise<Exclude<IssueOutcome, { code: "WRONG_SHARD" }>>;
  setQuantity(couponId: number, quantity: number): Promise<SetQuantityOutcome>;
  /** Loads a new coupon into its objects ahead of the first issuance (and splits the quantity over its shards). */
  prime(couponId: number): Promise<string>;
  /** Raises the shard count on every shard (shard 0, the authority, last) and primes the new ones. */
  setShards(couponId: number, shards: number, now: number): Promise<SetShardsOutcome>;
  /** Every shard's state (admin view, tests, the sharded benchmark). */
  shardStates(couponId: number, shards: number): Promise<IssuerState[]>;
  /** Every shard's issued count and quantity, in one parallel fan-out (the public availability read). */
  shardCounts(couponId: number, shards: number): Promise<IssuerCounts[]>;
}

/** Calls one issuance may make while it learns the coupon's shard count (docs/ARCHITECTURE.md §9). */
const ROUTE_ATTEMPTS = 3;

/**
 * Adapter: the CouponIssuer shards of a coupon, addressed by `shardObjectName`;
 * the objects' own D1 and sibling calls count as nested hops. An issuance goes
 * to the user's home shard under the count this isolate knows (1 until told
 * otherwise: shard 0, which is the unsharded object and says the real count).
 */
export function couponIssuerClient(
  ns: ObjectNamespace<CouponIssuer>,
  meter: HopMeter = new HopMeter(),
  counts: ShardCountMemo = isolateShardCounts,
): CouponIssuerPort {
  const stub = (couponId: number, shard: number) => ns.get(ns.idFromName(shardObjectName(couponId, shard)));
  const issueAt = (request: IssueRequest & { at: ShardAddress }) =>
    callObject<IssueOutcome>(
      meter,
      async () => {
        const out = (await stub(request.couponId, request.at.shard).issue(request)) as IssueOutcome;
        meter.noteNested("d1", out.d1Calls);
        meter.noteNested("do", out.doCalls);
        return out;
      },
      (out) => out.d1Calls + out.doCalls,
    );
  const others = (shards: number) => Array.from({ length: shards - 1 }, (_, i) => i + 1);
  return {
    issue: async (request) => {
      const { couponId, userId, now } = request;
      let shards = counts.get(couponId, now);
      for (let attempt = 0; attempt < ROUTE_ATTEMPTS; attempt++) {
        const out = await issueAt({ ...request, at: { shard: homeShard(userId, shards), shards } });
        if (out.ok || out.code !== "WRONG_SHARD") return out;
        if (out.shards !== undefined) {
          counts.remember(couponId, out.shards, out.startsAt, now);
          shards = out.shards;
        } else {
          // A shard that disagrees with what shard 0 said: ask shard 0 again (a raise is under way).
          counts.forget(couponId);
          shards = 1;
        }
      }
      log("warn", "coupon issuance could not find its shard", { couponId, userId, shards });
      return { ok: false, code: "SERVICE_UNAVAILABLE", d1Calls: 0, doCalls: 0 };
    },
    setQuantity: (couponId, quantity) => callObject<SetQuantityOutcome>(meter, () => stub(couponId, 0).setQuantity(couponId, quantity)),
    prime: async (couponId) => {
      const first = await callObject<PrimeOutcome>(meter, () => stub(couponId, 0).prime(couponId, 0));
      if (!first.ok) return first.code;
      if (first.shards <= 1) return "ok";
      counts.remember(couponId, first.shards, first.startsAt, Date.now());
      // Each other shard takes its fair share from shard 0 (shard 0 serialises the grants, so the split is even).
      const rest = await Promise.all(
        others(first.shards).map((s) => callObject<PrimeOutcome>(meter, () => stub(couponId, s).prime(couponId, s))),
      );
      const refused = rest.find((r) => !r.ok);
      return refused && !refused.ok ? refused.code : "ok";
    },
    setShards: async (couponId, shards, now) => {
      counts.forget(couponId);
      const rest = await Promise.all(
        others(shards).map((s) => callObject<SetShardsOutcome>(meter, () => stub(couponId, s).setShards(couponId, s, shards, now))),
      );
      const refused = rest.find((r) => !r.ok);
      if (refused) return refused;
      return callObject<SetShardsOutcome>(meter, () => stub(couponId, 0).setShards(couponId, 0, shards, now));
    },
    shardStates: (couponId, shards) =>
      Promise.all(Array.from({ length: shards }, (_, s) => callObject<IssuerState>(meter, () => stub(couponId, s).state()))),
    shardCounts: (couponId, shards) =>
      Promise.all(Array.from({ length: shards }, (_, s) => callObject<IssuerCounts>(meter, () => stub(couponId, s).counts()))),
  };
}
