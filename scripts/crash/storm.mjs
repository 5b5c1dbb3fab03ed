/**
 * The crash test's mixed storm: per user, one flow of charges (each with its own
 * Idempotency-Key and an amount no other charge has, so history rows map back to keys),
 * a coupon issue, orders, payments and cancels. Every request goes to 127.0.0.1 only,
 * the count is bounded (USERS x about 9) and each has a timeout. A flow stops at its first
 * network error (the server was killed); what was acknowledged is recorded for the checks.
 */
export const USERS = 60;
export const PRODUCTS = 4;
export const PRODUCT_STOCK = 60;
export const COUPON_QUANTITY = 25;
const REQUEST_TIMEOUT_MS = 15_000;
const STAGGER_MS = 40;
export const ADMIN = { authorization: "Bearer bench-admin-token" };

/** @typedef {{ productId: number, quantity: number }} Line */
/** @typedef {{ users: number[], products: number[], couponId: number }} World */
/**
 * What the storm sent and what was acknowledged.
 * @typedef {object} Ledger
 * @property {{ userId: number, key: string, amount: number, acked: boolean, body: any }[]} charges
 * @property {{ userId: number, userCouponId: number }[]} issues
 * @property {{ userId: number, orderId: number, lines: Line[], userCouponId: number | undefined }[]} orders
 * @property {{ userId: number, orderId: number }[]} payments
 * @property {{ userId: number, orderId: number }[]} cancels
 * @property {number} answered
 * @property {number} unanswered
 */
/** @typedef {{ status: number, body: any, replayed?: boolean }} Answer */

/**
 * One JSON call; `status: 0` means no answer (connection refused or cut, timeout).
 * @param {string} base
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<Answer>}
 */
export async function call(base, method, path, body, headers = {}) {
  try {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = { raw: text };
    }
    return { status: res.status, body: json, replayed: res.headers.get("idempotent-replayed") === "true" };
  } catch (err) {
    const e = /** @type {{ cause?: { code?: string }, name?: string } | undefined} */ (err);
    return { status: 0, body: { error: String(e?.cause?.code ?? e?.name ?? err) } };
  }
}

/**
 * Creates the users, products and the coupon the storm fights over (admin API).
 * @param {string} base
 * @returns {Promise<World>}
 */
export async function seed(base) {
  /** @type {number[]} */
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const r = await call(base, "POST", "/admin/users", { name: `crash-${i}`, initialBalance: 0 }, ADMIN);
    if (r.status !== 201) throw new Error(`seed user: ${r.status} ${JSON.stringify(r.body)}`);
    users.push(r.body.data.userId);
  }
  /** @type {number[]} */
  const products = [];
  for (let i = 0; i < PRODUCTS; i++) {
    const r = await call(base, "POST", "/admin/products", { name: `crash-p${i}`, price: 300 + 100 * i, stock: PRODUCT_STOCK }, ADMIN);
    if (r.status !== 201) throw new Error(`seed product: ${r.status} ${JSON.stringify(r.body)}`);
    products.push(r.body.data.productId);
  }
  const now = Date.now();
  const c = await call(
    base,
    "POST",
    "/admin/coupons",
    {
      name: "crash-coupon",
      discountType: "AMOUNT",
      discountValue: 200,
      quantity: COUPON_QUANTITY,
      startsAt: new Date(now - 3_600_000).toISOString(),
      endsAt: new Date(now + 7 * 86_400_000).toISOString(),
    },
    ADMIN,
  );
  if (c.status !== 201) throw new Error(`seed coupon: ${c.status} ${JSON.stringify(c.body)}`);
  return { users, products, couponId: c.body.data.couponId };
}

/**
 * Runs every user's flow at once; `onResponse` is called after each answered request
 * (the driver kills the server from there). Returns the ledger of what was sent and acknowledged.
 * @param {string} base
 * @param {World} world
 * @param {(answered: number) => void} onResponse
 * @returns {Promise<Ledger>}
 */
export async function runStorm(base, world, onResponse) {
  /** @type {Ledger} */
  const ledger = { charges: [], issues: [], orders: [], payments: [], cancels: [], answered: 0, unanswered: 0 };
  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} body
   * @param {Record<string, string>} [headers]
   */
  const send = async (method, path, body, headers) => {
    const r = await call(base, method, path, body, headers);
    if (r.status === 0) ledger.unanswered++;
    else {
      ledger.answered++;
      onResponse(ledger.answered);
    }
    return r;
  };
  /**
   * @param {number} userId
   * @param {number} u
   */
  const flow = async (userId, u) => {
    /** @param {number} n */
    const charge = async (n) => {
      // Unique per (user, n): a history row names the key it came from.
      const c = { userId, key: `crash-${userId}-${n}`, amount: 3_000 + u * 10 + n, acked: false, body: undefined };
      ledger.charges.push(c);
      const r = await send("POST", "/points/charge", { userId, amount: c.amount }, { "idempotency-key": c.key });
      if (r.status === 200) Object.assign(c, { acked: true, body: r.body });
      return r.status !== 0;
    };
    /**
     * @param {Line[]} lines
     * @param {number} [userCouponId]
     */
    const order = async (lines, userCouponId) => {
      const r = await send(
        "POST",
        "/orders",
        { userId, ...(userCouponId ? { userCouponId } : {}), orderProducts: lines },
        { "idempotency-key": `crash-o-${userId}-${lines[0].productId}-${lines.length}` },
      );
      if (r.status === 201) ledger.orders.push({ userId, orderId: r.body.data.orderId, lines, userCouponId });
      return r;
    };
    /** @param {number} orderId */
    const pay = async (orderId) => {
      const r = await send("POST", "/points/use", { userId, orderId }, { "idempotency-key": `crash-pay-${orderId}` });
      if (r.status === 200) ledger.payments.push({ userId, orderId });
      return r.status !== 0;
    };
    if (!(await charge(1))) return;
    const issued = await send("POST", "/coupons/issue", { userId, couponId: world.couponId });
    if (issued.status === 0) return;
    if (issued.status === 201) ledger.issues.push({ userId, userCouponId: issued.body.data.userCouponId });
    if (!(await charge(2))) return;
    const p = world.products;
    const first = await order(
      [
        { productId: p[u % p.length], quantity: 1 + (u % 3) },
        { productId: p[(u + 1) % p.length], quantity: 1 },
      ],
      issued.status === 201 ? issued.body.data.userCouponId : undefined,
    );
    if (first.status === 0) return;
    if (first.status === 201) {
      if (u % 4 === 0) {
        const r = await send("POST", `/orders/${first.body.data.orderId}/cancel`, { userId });
        if (r.status === 0) return;
        if (r.status === 200) ledger.cancels.push({ userId, orderId: first.body.data.orderId });
      } else if (!(await pay(first.body.data.orderId))) return;
    }
    if (!(await charge(3))) return;
    const second = await order([{ productId: p[(u + 2) % p.length], quantity: 2 }]);
    if (second.status === 0) return;
    if (second.status === 201 && u % 5 !== 0 && !(await pay(second.body.data.orderId))) return;
    await charge(4);
  };
  // Staggered starts, so that at the kill every kind of request is in flight somewhere.
  await Promise.all(world.users.map((userId, u) => new Promise((r) => setTimeout(r, u * STAGGER_MS)).then(() => flow(userId, u))));
  return ledger;
}
