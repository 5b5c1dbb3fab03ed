-- Issue 19: coupons.quantity_version orders quantity writes (a late, older write never lowers D1's quantity);
-- orders.idempotency_key lets a keyed placement refused for stock see a twin still in flight under the same key.
ALTER TABLE `coupons` ADD `quantity_version` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `orders` ADD `idempotency_key` text;