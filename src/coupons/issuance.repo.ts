/**
 * D1 side of coupon issuance, used only by the CouponIssuer DO: loading its
 * state on first use and projecting its decisions into `user_coupons`,
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

/** The coupon definition plus the issuances D1 already holds for it. */
export interface IssuerSnapshot {
  quantity: number;
  startsAt: number;
  endsAt: number;
  validDays: number;
  issued: (IssuanceRecord & { userCouponId: number })[];
}

/** Rows per D1 batch: 3 statements each, well under D1's limits; the id read-back binds 1 + rows params (< 100). */
export const ROWS_PER_BATCH = 32;

/** Port the DO writes through; tests swap it to simulate a D1 outage. */
export interface IssuanceStore {
  load(couponId: number): Promise<IssuerSnapshot | undefined>;
  project(couponId: number, records: IssuanceRecord[], at: number): Promise<Map<number, number>>;
  updateQuantity(couponId: number, quantity: number): Promise<void>;
}

export const couponIssuedEventId = (couponId: number, userId: number) => `coupon.issued:${couponId}:${userId}`;

export class IssuanceRepo implements IssuanceStore {
  constructor(private readonly d1: D1Database) {}

  async load(couponId: number): Promise<IssuerSnapshot | undefined> {
    const [, coupon, rows] = await this.d1.batch([
      // issued_quantity counts rows from here on (project adds what it inserts); rows that reached
      // D1 some other way (an import, an older version) are counted once, when an object first loads.
      this.d1
        .prepare("UPDATE coupons SET issued_quantity = min(quantity, (SELECT count(*) FROM user_coupons WHERE coupon_id = ?1)) WHERE id = ?1")
        .bind(couponId),
      this.d1
        .prepare("SELECT quantity, starts_at, ends_at, valid_days FROM coupons WHERE id = ?1")
        .bind(couponId),
      this.d1
        .prepare("SELECT id, user_id, issued_at, expires_at FROM user_coupons WHERE coupon_id = ?1 ORDER BY id")
        .bind(couponId),
    ]);
    const c = coupon?.results[0] as { quantity: number; starts_at: number; ends_at: number; valid_days: number } | undefined;
    if (!c) return undefined;
    const issued = (rows?.results ?? []) as { id: number; user_id: number; issued_at: number; expires_at: number }[];
    return {
      quantity: c.quantity,
      startsAt: c.starts_at,
      endsAt: c.ends_at,
      validDays: c.valid_days,
      issued: issued.map((r) => ({ userId: r.user_id, issuedAt: r.issued_at, expiresAt: r.expires_at, userCouponId: r.id })),
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
      const chunk = records.slice(i, i + ROWS_PER_BATCH);
      const statements: D1PreparedStatement[] = [];
      for (const r of chunk) {
        statements.push(
          this.d1
            .prepare(
              `INSERT INTO user_coupons (user_id, coupon_id, issued_at, expires_at)
               SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
               ON CONFLICT (user_id, coupon_id) DO NOTHING`,
            )
            .bind(r.userId, couponId, r.issuedAt, r.expiresAt),
          // changes() is the insert's: 1 for a new row, 0 for a retry or an unknown user.
          this.d1.prepare("UPDATE coupons SET issued_quantity = issued_quantity + changes() WHERE id = ?1").bind(couponId),
          this.d1
            .prepare(
              `INSERT OR IGNORE INTO outbox (event_id, type, aggregate_id, payload, status, next_attempt_at, created_at)
               SELECT ?1, 'coupon.issued', ?2,
                      -- the CouponIssuedV1 envelope of src/events/event.schemas.ts, built from the row itself
                      json_object('eventId', ?1, 'type', 'coupon.issued', 'version', 1,
                        'occurredAt', strftime('%Y-%m-%dT%H:%M:%fZ', issued_at / 1000.0, 'unixepoch'),
                        'issuance', json_object('couponId', coupon_id, 'userId', user_id, 'userCouponId', id,
                          'issuedAt', strftime('%Y-%m-%dT%H:%M:%fZ', issued_at / 1000.0, 'unixepoch'),
                          'expiresAt', strftime('%Y-%m-%dT%H:%M:%fZ', expires_at / 1000.0, 'unixepoch'))),
                      'PENDING', ?3, ?3
               FROM user_coupons WHERE user_id = ?4 AND coupon_id = ?5`,
            )
            .bind(couponIssuedEventId(couponId, r.userId), String(couponId), at, r.userId, couponId),
        );
      }
      statements.push(
        this.d1
          .prepare(`SELECT user_id, id FROM user_coupons WHERE coupon_id = ?1 AND user_id IN (${chunk.map((_, k) => `?${k + 2}`).join(", ")})`)
          .bind(couponId, ...chunk.map((r) => r.userId)),
      );
      const results = await this.d1.batch<{ user_id: number; id: number }>(statements);
      for (const row of results[results.length - 1]?.results ?? []) ids.set(row.user_id, row.id);
    }
    return ids;
  }

  async updateQuantity(couponId: number, quantity: number): Promise<void> {
    await this.d1.prepare("UPDATE coupons SET quantity = ?1 WHERE id = ?2").bind(quantity, couponId).run();
  }
}
