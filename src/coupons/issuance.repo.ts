/**
 * D1 side of coupon issuance, used only by the CouponIssuer DO: loading its
 * state on first use (in pages) and projecting its decisions into `user_coupons`,
 * `coupons.issued_quantity` and the outbox. Every write is idempotent
 * (UNIQUE(user_id, coupon_id), outbox event_id UNIQUE, issued_quantity set
 * from the DO's count rather than incremented), so the DO may retry freely.
 */

/** One issuance as the DO recorded it. */
export interface IssuanceRecord {
  userId: number;
  issuedAt: number;
  expiresAt: number;
}

/** The coupon's definition as D1 holds it. */
export interface IssuerCouponDef {
  quantity: number;
  /** The coupon's shard count (`coupons.shards`). */
  shards: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
}

/** An issuance D1 already holds, with its `user_coupons.id` (the load's cursor). */
export type LoadedIssuance = IssuanceRecord & { userCouponId: number };

/** One step of an object's first load: the definition and the next rows of the coupon, by id. */
export interface IssuerPage {
  coupon: IssuerCouponDef;
  /** Rows with `userCouponId > afterId`, ascending, at most `limit`: fewer means the last page. */
  rows: LoadedIssuance[];
}

/**
 * Rows one load step reads (one D1 call, about 40 bytes a row): a 1,000,000-issuance
 * coupon loads in 200 steps, each a bounded read and a bounded SQLite write.
 */
export const LOAD_PAGE_ROWS = 5_000;

/** Rows per D1 batch (four statements, one JSON parameter): one group-commit batch of the CouponIssuer. */
export const ROWS_PER_BATCH = 100;

/** Port the DO writes through; tests swap it to simulate a D1 outage. */
export interface IssuanceStore {
  /**
   * The coupon's definition and its rows after `afterId` (undefined: no such coupon).
   * `recount` also sets `issued_quantity` from the rows D1 holds (shard 0's first step).
   */
  loadPage(couponId: number, step: { afterId: number; limit: number; recount: boolean }): Promise<IssuerPage | undefined>;
  project(couponId: number, records: IssuanceRecord[], at: number): Promise<Map<number, number>>;
  /**
   * Writes the coupon's quantity under `version` (the object's monotonic stamp of the change); a write
   * lands only over an older version, so a late or repeated write of an older quantity changes nothing.
   */
  updateQuantity(couponId: number, quantity: number, version: number): Promise<void>;
}

export const couponIssuedEventId = (couponId: number, userId: number) => `coupon.issued:${couponId}:${userId}`;

export class IssuanceRepo implements IssuanceStore {
  constructor(private readonly d1: D1Database) {}

  async loadPage(couponId: number, step: { afterId: number; limit: number; recount: boolean }): Promise<IssuerPage | undefined> {
    const reads = [
      this.d1.prepare("SELECT quantity, starts_at, ends_at, valid_days, shards FROM coupons WHERE id = ?1").bind(couponId),
      // Keyset paging on user_coupons_coupon_id_idx (coupon_id, then rowid): a step reads only its own rows.
      this.d1
        .prepare("SELECT id, user_id, issued_at, expires_at FROM user_coupons WHERE coupon_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
        .bind(couponId, step.afterId, step.limit),
    ];
    const recount = step.recount
      ? [
          // issued_quantity counts rows from here on (project adds what it inserts); rows that reached D1 some
          // other way (an import, an older version) are counted once, when the coupon's shard 0 first loads.
          this.d1
            .prepare(
              "UPDATE coupons SET issued_quantity = min(quantity, (SELECT count(*) FROM user_coupons WHERE coupon_id = ?1)) WHERE id = ?1",
            )
            .bind(couponId),
        ]
      : [];
    const results = await this.d1.batch([...recount, ...reads]);
    const [coupon, rows] = results.slice(recount.length);
    const c = coupon?.results[0] as
      | { quantity: number; starts_at: number; ends_at: number; valid_days: number; shards: number }
      | undefined;
    if (!c) return undefined;
    const issued = (rows?.results ?? []) as { id: number; user_id: number; issued_at: number; expires_at: number }[];
    return {
      coupon: { quantity: c.quantity, shards: c.shards, startsAt: c.starts_at, endsAt: c.ends_at, validDays: c.valid_days },
      rows: issued.map((r) => ({ userId: r.user_id, issuedAt: r.issued_at, expiresAt: r.expires_at, userCouponId: r.id })),
    };
  }

  /**
   * Makes sure each record of an existing user is exactly one `user_coupons`
   * row with one `coupon.issued` outbox row, and counts every row it inserts
   * into `issued_quantity` (so that column is exactly the number of rows, and
   * a retry, which inserts nothing, adds nothing). A record whose user does not
   * exist gets no row. Returns userId -> user coupon id for the records D1 holds.
   */
  async project(couponId: number, records: IssuanceRecord[], at: number): Promise<Map<number, number>> {
    const ids = new Map<number, number>();
    for (let i = 0; i < records.length; i += ROWS_PER_BATCH) {
      // One JSON parameter carries the chunk, so the batch is four statements whatever its size.
      const rows = JSON.stringify(records.slice(i, i + ROWS_PER_BATCH).map((r) => ({ u: r.userId, i: r.issuedAt, e: r.expiresAt })));
      // This chunk's rows, looked up by UNIQUE(user_id, coupon_id) one by one (CROSS JOIN keeps json_each
      // the outer loop): never a scan of the coupon's other rows, which would make a storm quadratic.
      const mine = "json_each(?2) j CROSS JOIN user_coupons uc ON uc.user_id = json_extract(j.value, '$.u') AND uc.coupon_id = ?1";
      const [, , , owned] = await this.d1.batch<{ user_id: number; id: number }>([
        this.d1
          .prepare(
            `INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at)
             SELECT json_extract(r.value, '$.u'), ?1, json_extract(r.value, '$.i'), json_extract(r.value, '$.e') FROM json_each(?2) r
             WHERE EXISTS (SELECT 1 FROM users WHERE id = json_extract(r.value, '$.u'))
             ON CONFLICT (user_id, coupon_id) DO NOTHING`,
          )
          .bind(couponId, rows),
        // changes() is the insert's: the rows it added (a retried or unknown user's row adds none).
        this.d1.prepare("UPDATE coupons SET issued_quantity = issued_quantity + changes() WHERE id = ?1").bind(couponId),
        this.d1
          .prepare(
            `INSERT OR IGNORE INTO outbox (event_id, type, aggregate_id, payload, status, next_attempt_at, created_at)
             SELECT 'coupon.issued:' || uc.coupon_id || ':' || uc.user_id, 'coupon.issued', CAST(uc.coupon_id AS TEXT),
                    -- the CouponIssuedV1 envelope of src/events/event.schemas.ts, built from the row itself
                    json_object('eventId', 'coupon.issued:' || uc.coupon_id || ':' || uc.user_id, 'type', 'coupon.issued', 'version', 1,
                      'occurredAt', strftime('%Y-%m-%dT%H:%M:%fZ', uc.issued_at / 1000.0, 'unixepoch'),
                      'issuance', json_object('couponId', uc.coupon_id, 'userId', uc.user_id, 'userCouponId', uc.id,
                        'issuedAt', strftime('%Y-%m-%dT%H:%M:%fZ', uc.issued_at / 1000.0, 'unixepoch'),
                        'expiresAt', strftime('%Y-%m-%dT%H:%M:%fZ', uc.expires_at / 1000.0, 'unixepoch'))),
                    'PENDING', ?3, ?3
             FROM ${mine}`,
          )
          .bind(couponId, rows, at),
        this.d1.prepare(`SELECT uc.user_id AS user_id, uc.id AS id FROM ${mine}`).bind(couponId, rows),
      ]);
      for (const row of owned?.results ?? []) ids.set(row.user_id, row.id);
    }
    return ids;
  }

  async updateQuantity(couponId: number, quantity: number, version: number): Promise<void> {
    await this.d1
      .prepare("UPDATE coupons SET quantity = ?1, quantity_version = ?3 WHERE id = ?2 AND quantity_version < ?3")
      .bind(quantity, couponId, version)
      .run();
  }
}
