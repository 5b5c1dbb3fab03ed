/**
 * Where new Durable Objects are created. Cloudflare creates an object near the Worker that
 * first calls `get()` on it unless the call carries a `locationHint`; an object is pinned where
 * it was created, and each of its calls to D1 crosses to the database's primary. So objects are
 * hinted into the region the D1 primary was created in (`DO_LOCATION_HINT`, which
 * `npm run deploy:setup` also passes to `wrangler d1 create --location`). Unset (local
 * development, Miniflare ignores hints anyway): no hint. A hint on an existing object is ignored.
 */

/** Every `locationHint` the runtime accepts (workers-types `DurableObjectLocationHint`). */
export const LOCATION_HINTS = [
  "wnam",
  "enam",
  "sam",
  "weur",
  "eeur",
  "apac",
  "apac-ne",
  "apac-se",
  "oc",
  "afr",
  "me",
] as const satisfies readonly DurableObjectLocationHint[];

export type LocationHint = (typeof LOCATION_HINTS)[number];

/** True when `value` names a location hint. */
export function isLocationHint(value: string): value is LocationHint {
  return (LOCATION_HINTS as readonly string[]).includes(value);
}

/** The two calls the stub factories make: an id from a name, and a stub for it. */
export type ObjectNamespace<T extends Rpc.DurableObjectBranded | undefined> = Pick<DurableObjectNamespace<T>, "idFromName" | "get">;

/**
 * The namespace with `hint` on every `get()` (the namespace itself when there is none). Every
 * stub of CouponIssuer and ProductStock is made through one of these, from the Worker and from
 * a shard calling its siblings alike, so a shard is never created away from its siblings.
 */
export function placeObjects<T extends Rpc.DurableObjectBranded | undefined>(
  ns: ObjectNamespace<T>,
  hint: LocationHint | undefined,
): ObjectNamespace<T> {
  if (!hint) return ns;
  return {
    idFromName: (name) => ns.idFromName(name),
    get: (id, options) => ns.get(id, { locationHint: hint, ...options }),
  };
}
