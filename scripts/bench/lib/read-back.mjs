/**
 * Reading a storm's outcome back through the API, one request per user or per order
 * (bounded autocannon runs, each request with its user's JWT when the target needs one):
 * the HTTP-only counterpart of the local D1 queries, used by `--url` runs.
 */
import { api, userHeaders } from "./http.mjs";
import { load } from "./load.mjs";

/**
 * `GET <path(item)>` for every item, as its user; returns the `data` of each 200 by item
 * index, and the run (for the read-back table).
 * @template T
 * @param {string} url
 * @param {readonly T[]} items
 * @param {(item: T) => { path: string, userId: number }} request
 * @param {string} label
 * @returns {Promise<{ data: Map<number, any>, failed: number, run: import("./load.mjs").LoadRun }>}
 */
export async function readEach(url, items, request, label) {
  /** @type {Map<number, any>} */
  const data = new Map();
  let failed = 0;
  const run = await load({
    url,
    path: "/health",
    connections: Math.max(1, Math.min(50, items.length)),
    amount: items.length,
    maxSeconds: 300,
    timeout: 60,
    parseBodies: true,
    build: (i, ctx) => {
      ctx.i = i;
      const { path, userId } = request(/** @type {T} */ (items[i]));
      return { path, headers: userHeaders(userId) };
    },
    onResponse: (status, json, ctx) => {
      if (status === 200) data.set(ctx.i, json?.data);
      else failed++;
    },
    label,
  });
  return { data, failed, run };
}

/**
 * The admin list row (`GET /api/v1/admin/<list>`, newest first) of one id, paging down until
 * the ids pass below it; undefined when it is not there.
 * @param {string} url
 * @param {"coupons" | "products"} list
 * @param {number} id
 * @returns {Promise<any>}
 */
export async function adminListRow(url, list, id) {
  const idField = list === "coupons" ? "couponId" : "productId";
  let cursor = "";
  for (let page = 0; page < 100; page++) {
    const r = await api(url, "GET", `/api/v1/admin/${list}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, undefined, {
      admin: true,
    });
    if (r.status !== 200) throw new Error(`admin ${list} list: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    /** @type {any[]} */
    const rows = r.json.data[list];
    const row = rows.find((x) => x[idField] === id);
    if (row) return row;
    if (!r.json.data.nextCursor || rows.every((x) => x[idField] < id)) return undefined;
    cursor = r.json.data.nextCursor;
  }
  return undefined;
}
