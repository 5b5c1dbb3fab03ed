-- The operator console's issuances-per-second chart (GET /admin/coupons/{couponId}/issuances): a coupon's wins
-- in a time span are a range of this covering index, so a poll reads the wins it counts and nothing else.
CREATE INDEX `user_coupons_coupon_issued_idx` ON `user_coupons` (`coupon_id`,`issued_at`);