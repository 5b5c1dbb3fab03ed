ALTER TABLE `coupons` ADD `quantity_version` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `orders` ADD `idempotency_key` text;