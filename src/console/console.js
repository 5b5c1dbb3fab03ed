// The operator console (GET /admin/console): a plain module, no framework, no build.
// It talks only to this Worker's admin API with the token the operator typed, kept in
// sessionStorage (this tab only); it never writes data into the page as HTML (textContent only).

const POLL_MS = 1500;
/** Polls kept per product (its orders-per-minute counts need the trailing minute). */
const POLL_POINTS = 120;
/** Bucket widths GET /admin/coupons/{id}/issuances offers, and how many buckets one answer spans at most. */
const BUCKET_SECONDS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600];
const MAX_BUCKETS = 900;
const TOKEN_KEY = "console.adminToken";
const WATCH_KEY = "console.watched";

const $ = (sel, root = document) => root.querySelector(sel);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  timer: undefined,
  /** Bumped on sign-in/out, so an answer of an older session is dropped. */
  session: 0,
  watched: loadWatched(),
  /**
   * couponId -> the issuances chart since the window opened, from the server's series:
   * {bucketSeconds, counts: Map(bucket start ms -> wins), from (where the next ask starts), to, startsAt, endsAt}.
   */
  issuances: new Map(),
  /** productId -> [{t, requests, taken}] (orders and units in the last minute; an order is one reserve call per shard it touches). */
  productSeries: new Map(),
  /** Whether the list routes exist on this deployment (false after a 404: only watched ids are shown). */
  lists: { coupon: true, product: true },
};

function loadWatched() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(WATCH_KEY) ?? "{}");
    return { coupon: new Set(saved.coupon ?? []), product: new Set(saved.product ?? []) };
  } catch {
    return { coupon: new Set(), product: new Set() };
  }
}

function watch(kind, id) {
  state.watched[kind].add(Number(id));
  sessionStorage.setItem(WATCH_KEY, JSON.stringify({ coupon: [...state.watched.coupon], product: [...state.watched.product] }));
}

// ---- API ----

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    return { status: 0, ok: false, body: { error: "NETWORK", detail: String(err) } };
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    // not JSON: described by its status alone
  }
  return { status: res.status, ok: res.ok, body: json };
}

/** The API's own words on a refusal: status, code and `detail` (falls back to `message`). */
function refusal(r) {
  const b = r.body ?? {};
  return `${r.status} ${b.error ?? ""}: ${b.detail ?? b.message ?? "no detail"}`.trim();
}

// ---- sign-in ----

async function signIn(token) {
  state.token = token;
  const session = ++state.session;
  const probe = await api("GET", "/api/v1/admin/stats");
  if (session !== state.session) return;
  if (!probe.ok) {
    signOut(`Refused: ${refusal(probe)}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#auth-error").hidden = true;
  $("#console").hidden = false;
  $("#logout").hidden = false;
  document.body.dataset.signedIn = "true";
  schedule(0, session);
}

function signOut(error) {
  state.session++;
  clearTimeout(state.timer);
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("#console").hidden = true;
  $("#logout").hidden = true;
  delete document.body.dataset.signedIn;
  const box = $("#auth-error");
  box.hidden = !error;
  box.textContent = error ?? "";
  $("#status").textContent = error ? "Not signed in." : "Signed out.";
}

function schedule(ms, session) {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => refresh(session).finally(() => session === state.session && schedule(POLL_MS, session)), ms);
}

// ---- one refresh ----

const idOf = (item, kind) => item[`${kind}Id`] ?? item.id;
const itemsOf = (data, key) => (data ? (data.items ?? data[key] ?? []) : []);

async function listIds(kind, path, key) {
  if (!state.lists[kind]) return [];
  const r = await api("GET", path);
  if (r.status === 404 || r.status === 405) {
    state.lists[kind] = false; // this deployment has no list route: watched ids only
    return [];
  }
  return r.ok ? itemsOf(r.body.data, key).map((it) => ({ id: idOf(it, kind), item: it })) : [];
}

async function refresh(session) {
  const started = performance.now();
  const [stats, letters, couponList, productList, top, best] = await Promise.all([
    api("GET", "/api/v1/admin/stats"),
    api("GET", "/api/v1/admin/dead-letters?limit=100"),
    listIds("coupon", "/api/v1/admin/coupons?limit=100", "coupons"),
    listIds("product", "/api/v1/admin/products?limit=100", "products"),
    api("GET", "/api/v1/products/top?size=10"),
    api("GET", "/api/v1/products/best"),
  ]);
  if (session !== state.session) return;
  if (stats.status === 401 || stats.status === 403) return signOut(`Refused: ${refusal(stats)}`);

  const coupons = merge(couponList, state.watched.coupon);
  const products = merge(productList, state.watched.product);
  const [couponViews, , productViews] = await Promise.all([
    Promise.all(coupons.map(({ id }) => api("GET", `/api/v1/admin/coupons/${id}/shards`))),
    Promise.all(coupons.map(({ id, item }) => followIssuances(id, item))),
    Promise.all(products.map(({ id }) => api("GET", `/api/v1/admin/products/${id}/stock-shards`))),
  ]);
  if (session !== state.session) return;
  const now = Date.now();

  if (stats.ok) {
    $('[data-field="outboxPending"]').textContent = stats.body.data.outboxPending;
    $('[data-field="deadLettersWaiting"]').textContent = stats.body.data.deadLettersWaiting;
  }
  renderDeadLetters(letters.ok ? itemsOf(letters.body.data, "deadLetters") : []);
  renderCards("#coupons", coupons, couponViews, (entry, view) => couponCard(entry, view));
  renderCards("#products", products, productViews, (entry, view) => productCard(entry, view, now));
  $("#coupons-note").textContent = state.lists.coupon
    ? ""
    : "No coupon list on this deployment: showing the coupons created or watched here.";
  $("#products-note").textContent = state.lists.product
    ? ""
    : "No product list on this deployment: showing the products created or watched here.";
  renderRanking("#top", top.ok ? top.body.data.products : []);
  $("#top-date").textContent = top.ok ? top.body.data.date : refusal(top);
  renderRanking("#best", best.ok ? best.body.data.bestSellers : []);
  $("#best-range").textContent = best.ok ? `${best.body.data.from} … ${best.body.data.to}` : refusal(best);

  document.body.dataset.refreshedAt = String(now);
  $("#status").textContent =
    `Signed in · updated ${new Date(now).toLocaleTimeString()} (${Math.round(performance.now() - started)} ms) · every ${POLL_MS / 1000} s`;
}

/** Listed items first (in list order), then watched ids the list did not return. */
function merge(listed, watched) {
  const seen = new Set(listed.map((e) => Number(e.id)));
  return [...listed, ...[...watched].filter((id) => !seen.has(id)).map((id) => ({ id, item: {} }))];
}

// ---- rendering (DOM built with textContent: names come from users of the API) ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    tag === "svg" || tag === "polyline" ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag,
  );
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fact = (label, field, value) => el("div", {}, el("dt", {}, label), el("dd", { "data-field": field }, value));

function renderCards(selector, entries, views, card) {
  const root = $(selector);
  root.replaceChildren(...entries.map((entry, i) => card(entry, views[i])));
}

function couponCard({ id, item }, view) {
  const box = el("article", { class: "card", "data-coupon-id": id });
  const title = item.couponTitle ?? item.name;
  box.append(
    el(
      "h3",
      {},
      `Coupon #${id}`,
      title ? el("small", {}, ` ${title}`) : "",
      item.status ? el("span", { class: "badge" }, item.status) : "",
    ),
  );
  if (!view.ok) {
    box.append(el("p", { class: "error" }, refusal(view)));
    return box;
  }
  const v = view.body.data;
  const chart = state.issuances.get(id);
  box.append(
    el(
      "dl",
      {},
      fact("quantity", "quantity", v.quantity),
      fact("issued", "issued", v.issued),
      fact("remaining", "remaining", v.quantity - v.issued),
      fact("shards (K)", "shards", v.shards),
    ),
    chart?.to ? issuanceChart(chart) : el("p", { class: "chart" }, "issuances/s: loading…"),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...["shard", "units held", "issued", "free", "requests"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...v.perShard.map((s) =>
          el("tr", { "data-shard": s.shard }, ...[s.shard, s.held, s.issued, s.free, s.requests].map((x) => el("td", {}, x))),
        ),
      ),
    ),
  );
  return box;
}

function productCard({ id, item }, view, now) {
  const box = el("article", { class: "card", "data-product-id": id });
  box.append(el("h3", {}, `Product #${id}`, item.name ? el("small", {}, ` ${item.name}`) : ""));
  if (!view.ok) {
    box.append(el("p", { class: "error" }, refusal(view)));
    return box;
  }
  const v = view.body.data;
  const requests = v.shards.reduce((n, s) => n + s.requests, 0);
  const series = push(state.productSeries, id, { t: now, requests, taken: v.total.held + v.total.confirmed + v.total.sold });
  box.append(
    el(
      "dl",
      {},
      fact("available", "available", v.total.available),
      fact("reserved", "reserved", v.total.held),
      fact("paid, settling", "confirmed", v.total.confirmed),
      fact("sold", "sold", v.total.sold),
      fact("orders, last min", "ordersPerMinute", perMinute(series, "requests")),
      fact("units, last min", "unitsPerMinute", perMinute(series, "taken")),
    ),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...["shard", "available", "reserved", "paid", "sold", "reserve calls"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...v.shards.map((s) =>
          el(
            "tr",
            { "data-shard": s.shard },
            ...[s.shard, s.available, s.held, s.confirmed, s.sold, s.requests].map((x) => el("td", {}, x)),
          ),
        ),
      ),
    ),
  );
  return box;
}

function push(map, id, point) {
  const series = map.get(id) ?? [];
  series.push(point);
  if (series.length > POLL_POINTS + 1) series.shift();
  map.set(id, series);
  return series;
}

/** How much the counter grew over the trailing minute of polls (less while the page has watched for under a minute). */
function perMinute(series, key) {
  const last = series[series.length - 1];
  let grown = 0;
  for (let i = series.length - 1; i > 0 && last.t - series[i - 1].t <= 60_000; i--)
    grown += Math.max(0, series[i][key] - series[i - 1][key]);
  return grown;
}

/** The narrowest bucket that fits `spanMs` in MAX_BUCKETS (one answer, one chart point per bucket). */
function bucketFor(spanMs) {
  return BUCKET_SECONDS.find((b) => spanMs <= b * 1000 * MAX_BUCKETS) ?? BUCKET_SECONDS[BUCKET_SECONDS.length - 1];
}

/**
 * Brings a coupon's chart up to date from the server's series: the first ask reads the window from its
 * opening, later ones only from a few buckets back (wins of the current bucket are still arriving) or from
 * where a cut answer stopped; the bucket widens as the window grows, which starts the chart over once.
 */
async function followIssuances(id, item) {
  let chart = state.issuances.get(id);
  const startsAt = chart?.startsAt ?? (item.startsAt ? Date.parse(item.startsAt) : undefined);
  const endsAt = chart?.endsAt ?? (item.endsAt ? Date.parse(item.endsAt) : Infinity);
  const want = startsAt === undefined ? 1 : bucketFor(Math.min(Date.now(), endsAt) - startsAt);
  if (!chart || chart.bucketSeconds !== want) {
    chart = { bucketSeconds: want, counts: new Map(), from: null, to: null, startsAt, endsAt };
    state.issuances.set(id, chart);
  }
  const query = new URLSearchParams({ bucketSeconds: String(chart.bucketSeconds) });
  if (chart.from) query.set("from", chart.from);
  const r = await api("GET", `/api/v1/admin/coupons/${id}/issuances?${query}`);
  if (!r.ok) return r;
  const d = r.body.data;
  const from = Date.parse(d.from);
  const to = Date.parse(d.to);
  for (const at of [...chart.counts.keys()]) if (at >= from && at < to) chart.counts.delete(at);
  for (const b of d.buckets) chart.counts.set(Date.parse(b.at), b.issued);
  chart.startsAt = Date.parse(d.startsAt);
  chart.endsAt = Date.parse(d.endsAt);
  chart.to = Math.max(chart.to ?? 0, to);
  chart.from = d.nextFrom ?? new Date(Math.max(from, to - 5_000 - chart.bucketSeconds * 1000)).toISOString();
  return r;
}

/** Issuances per second, one point per bucket from the window's opening to now. */
function issuanceChart(chart) {
  const bucketMs = chart.bucketSeconds * 1000;
  const first = Math.floor(chart.startsAt / bucketMs) * bucketMs;
  const rates = [];
  for (let at = Math.max(first, chart.to - MAX_BUCKETS * bucketMs); at < chart.to; at += bucketMs)
    rates.push((chart.counts.get(at) ?? 0) / chart.bucketSeconds);
  let total = 0;
  for (const n of chart.counts.values()) total += n;
  const w = 240;
  const h = 40;
  const peak = Math.max(0, ...rates);
  const step = w / Math.max(1, rates.length - 1);
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(h - 2 - (peak > 0 ? (r / peak) * (h - 4) : 0)).toFixed(1)}`).join(" ");
  const label = `issuances/s since the window opened (${chart.bucketSeconds} s buckets)`;
  const svg = el("svg", {
    class: "spark",
    viewBox: `0 0 ${w} ${h}`,
    width: w,
    height: h,
    role: "img",
    "aria-label": `${label}, peak ${peak.toFixed(1)}`,
    "data-peak": peak.toFixed(2),
    "data-samples": rates.length,
    "data-total": total,
  });
  svg.append(el("polyline", { points: rates.length > 1 ? points : `0,${h - 2} ${w},${h - 2}`, fill: "none" }));
  return el(
    "figure",
    { class: "chart" },
    svg,
    el("figcaption", {}, `${label}: now ${(rates[rates.length - 1] ?? 0).toFixed(1)}, peak ${peak.toFixed(1)}, ${total} in all`),
  );
}

function renderDeadLetters(letters) {
  $("#dead-letters").replaceChildren(
    ...letters.map((d) => {
      const button = el("button", { type: "button", "data-replay": d.id }, d.replayedAt ? "Replay again" : "Replay");
      button.addEventListener("click", () => replay(d.id));
      return el(
        "tr",
        { "data-dead-letter-id": d.id },
        el("td", {}, d.id),
        el("td", {}, d.type),
        el("td", {}, d.eventId),
        el("td", {}, d.attempts),
        el("td", {}, d.createdAt),
        el("td", { "data-field": "replayedAt" }, d.replayedAt ?? "—"),
        el("td", {}, button),
      );
    }),
  );
}

function renderRanking(selector, products) {
  $(selector).replaceChildren(
    ...products.map((p) => el("li", { "data-product-id": p.productId }, `${p.productName} (#${p.productId}): ${p.sales} sold`)),
  );
}

// ---- actions ----

async function replay(id) {
  const r = await api("POST", `/api/v1/admin/dead-letters/${id}/replay`, {});
  $("#replay-result").textContent = r.ok ? `Dead letter #${id} sent to the events queue again.` : refusal(r);
  $("#replay-result").className = r.ok ? "result ok" : "result error";
  schedule(0, state.session);
}

/** A number when the field holds one; otherwise the text as typed, so the API refuses it in its own words. */
const num = (v) => (v === "" || Number.isNaN(Number(v)) ? v : Number(v));
const isoOr = (v, fallbackMs) => new Date(v ? v : fallbackMs).toISOString();

const ACTIONS = {
  "create-coupon": async (f) => {
    const body = {
      name: f.name,
      discountType: f.discountType,
      discountValue: num(f.discountValue),
      quantity: num(f.quantity),
      startsAt: isoOr(f.startsAt, Date.now() - 1000),
      endsAt: isoOr(f.endsAt, Date.now() + 86_400_000),
      ...(f.shards === "" ? {} : { shards: num(f.shards) }),
    };
    const r = await api("POST", "/api/v1/admin/coupons", body);
    if (r.ok) watch("coupon", r.body.data.couponId);
    return [r, () => `Created coupon #${r.body.data.couponId}.`];
  },
  "create-product": async (f) => {
    const body = {
      name: f.name,
      price: num(f.price),
      stock: num(f.stock),
      ...(f.stockShards === "" ? {} : { stockShards: num(f.stockShards) }),
    };
    const r = await api("POST", "/api/v1/admin/products", body);
    if (r.ok) watch("product", r.body.data.productId);
    return [r, () => `Created product #${r.body.data.productId}.`];
  },
  restock: async (f) => {
    const r = await api("PATCH", `/api/v1/admin/products/${encodeURIComponent(f.productId)}/stock`, { delta: num(f.delta) });
    if (r.ok) watch("product", f.productId);
    return [r, () => `Product #${f.productId}: ${r.body.data.stock} available.`];
  },
  "coupon-shards": async (f) => {
    const r = await api("PUT", `/api/v1/admin/coupons/${encodeURIComponent(f.couponId)}/shards`, { shards: num(f.shards) });
    if (r.ok) watch("coupon", f.couponId);
    return [r, () => `Coupon #${f.couponId} now has ${r.body.data.shards} shards.`];
  },
  "stock-shards": async (f) => {
    const r = await api("PUT", `/api/v1/admin/products/${encodeURIComponent(f.productId)}/stock-shards`, {
      stockShards: num(f.stockShards),
    });
    if (r.ok) watch("product", f.productId);
    return [r, () => `Product #${f.productId} now has ${r.body.data.stockShards} stock shards.`];
  },
  watch: async (f) => {
    watch(f.kind, f.id);
    return [{ ok: true }, () => `Watching ${f.kind} #${f.id}.`];
  },
};

async function submitAction(form) {
  const out = $(".result", form);
  out.textContent = "…";
  const [r, success] = await ACTIONS[form.dataset.action](Object.fromEntries(new FormData(form)));
  out.textContent = r.ok ? success() : refusal(r);
  out.className = r.ok ? "result ok" : "result error";
  if (r.status === 401 || r.status === 403) return signOut(`Refused: ${refusal(r)}`);
  schedule(0, state.session);
}

// ---- wiring ----

$("#login").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("#token").value.trim());
});
$("#logout").addEventListener("click", () => signOut());
for (const form of document.querySelectorAll("form[data-action]")) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitAction(form);
  });
}
if (state.token) signIn(state.token);
