/**
 * The transfer protocol's messages and contracts (docs/SHARDING.md, "One transfer" and "Shard 0
 * is the reserve"). Owns the shapes that cross between shard objects (a `give` request and its
 * answer, a `push`), the RPC surface every shard object serves to its siblings (`ShardPeer`:
 * CouponIssuer and ProductStock serve the same one), and the port the balancer reaches them by.
 *
 * Direction, named once: the **receiver** asks and gets units; the **giver** answers and hands
 * them over. A claim is a `give` a shard i > 0 sends to shard 0; a gathering round is the `give`s
 * shard 0 sends to its siblings (`gather: true`); a push hands units back to shard 0.
 */

/**
 * A receiver's request for units. `transferId` is unique per receiver and re-sent unchanged;
 * `receiver` is the shard asking (the one the units go to: `transfers_out.to_shard` at the
 * giver). `gather`: shard 0 gathering: a giver that cannot give all of `need` gives everything
 * and reports itself drained.
 */
export interface GiveRequest {
  transferId: string;
  receiver: number;
  need: number;
  extra: number;
  gather?: boolean;
}

/** A giver's answer: what it granted under the id, and its state. */
export interface GiveAnswer {
  granted: number;
  /** Free units the giver kept. */
  available: number;
  /** The giver's move counter (positive grants and receipts), monotonic (diagnostics). */
  moves: number;
  /** The giver holds no free unit at rest and tells shard 0 before it holds one again (a shard i > 0). */
  drained: boolean;
  /** The giver's drain epoch: bumped by every change of `drained`, so shard 0 keeps only the newest word. */
  epoch: number;
  /** Shard 0's answer to a claim: it lacks the need and every sibling is drained (nothing is left anywhere). */
  dry?: boolean;
  /** Sequential rounds shard 0 waited for before answering a claim (its gathering round), for the hop count. */
  rounds?: number;
  /** The transfers the giver itself has open (a claim whose grant has not reached it yet). */
  openIds?: string[];
}

/** A drained shard hands units that came back to it to shard 0: applied once per `transferId`. */
export interface PushRequest {
  transferId: string;
  /** The shard handing the units back (the giver of the push). */
  sender: number;
  units: number;
}

/**
 * The answer of a giver whose resource does not exist (it never held a unit): nothing granted,
 * nothing recorded, not drained. Both objects answer it; a giver that exists but cannot load
 * (D1 unreachable) throws instead, so the receiver's transfer stays open and is re-sent.
 */
export const NOTHING_TO_GIVE: GiveAnswer = Object.freeze({ granted: 0, available: 0, moves: 0, drained: false, epoch: 0, openIds: [] });

/**
 * The RPC every shard object serves to its siblings, addressed by the resource id and the
 * shard the caller means (CouponIssuer and ProductStock implement it alike).
 * - `give`: granted at most once per transfer id; a repeat answers the recorded grant.
 *   A giver whose resource does not exist answers NOTHING_TO_GIVE; one that cannot load throws.
 * - `acknowledge`: the receiver applied these grants. Idempotent; a shard that never
 *   loaded granted nothing and ignores it.
 * - `push` (shard 0): units handed back by a drained sibling, applied once per id; throws when
 *   shard 0 cannot take it (the push stays owed at the sender).
 */
export interface ShardPeer {
  give(id: number, shard: number, request: GiveRequest): Promise<GiveAnswer>;
  acknowledge(id: number, shard: number, transferIds: string[]): Promise<void>;
  push(id: number, shard: number, push: PushRequest): Promise<void>;
}

/** How the balancer reaches a sibling (the object's RPC stubs; tests wrap it to crash mid-transfer). */
export interface SiblingPort {
  give(shard: number, request: GiveRequest): Promise<GiveAnswer>;
  acknowledge(shard: number, transferIds: string[]): Promise<void>;
  /** Hands shard `shard` (0) the units of `push` (applied once per id). */
  push(shard: number, push: PushRequest): Promise<void>;
}

/** An RPC stub of a shard object (its methods answer wrapped values; only `ShardPeer`'s are called). */
export interface ShardPeerStub {
  give(id: number, shard: number, request: GiveRequest): PromiseLike<unknown>;
  acknowledge(id: number, shard: number, transferIds: string[]): PromiseLike<unknown>;
  push(id: number, shard: number, push: PushRequest): PromiseLike<unknown>;
}

/** The sibling port of resource `id` over its shard objects' stubs (the same for both objects). */
export function siblingPortOver(id: number, stubOf: (shard: number) => ShardPeerStub): SiblingPort {
  return {
    give: async (shard, request) => (await stubOf(shard).give(id, shard, request)) as GiveAnswer,
    acknowledge: async (shard, ids) => {
      await stubOf(shard).acknowledge(id, shard, ids);
    },
    push: async (shard, push) => {
      await stubOf(shard).push(id, shard, push);
    },
  };
}
