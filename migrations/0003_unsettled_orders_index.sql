ALTER TABLE `orders` ADD `settle_after` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `orders` ADD `settle_attempts` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `orders_unsettled_idx` ON `orders` (`settle_after`,`id`) WHERE status IN ('PAID','EXPIRED','CANCELLED','FAILED') AND closed_at IS NULL;