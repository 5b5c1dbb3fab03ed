CREATE TABLE `batch_guards` (
	`ok` integer NOT NULL,
	`reason` text,
	CONSTRAINT "batch_guards_ok" CHECK(ok = 1)
);
--> statement-breakpoint
CREATE TABLE `best_seller_snapshots` (
	`business_date` text NOT NULL,
	`rank` integer NOT NULL,
	`product_id` integer NOT NULL,
	`sales` integer NOT NULL,
	`from_date` text NOT NULL,
	`to_date` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`business_date`, `rank`),
	CONSTRAINT "best_seller_snapshots_rank" CHECK(rank BETWEEN 1 AND 100)
);
--> statement-breakpoint
CREATE TABLE `coupons` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`discount_type` text NOT NULL,
	`discount_value` integer NOT NULL,
	`quantity` integer NOT NULL,
	`issued_quantity` integer DEFAULT 0 NOT NULL,
	`starts_at` integer NOT NULL,
	`ends_at` integer NOT NULL,
	`valid_days` integer DEFAULT 7 NOT NULL,
	`created_at` integer NOT NULL,
	CONSTRAINT "coupons_discount_type" CHECK(discount_type IN ('RATE','AMOUNT')),
	CONSTRAINT "coupons_discount_value_range" CHECK((discount_type = 'RATE' AND discount_value BETWEEN 1 AND 100) OR (discount_type = 'AMOUNT' AND discount_value > 0)),
	CONSTRAINT "coupons_quantity_positive" CHECK(quantity > 0),
	CONSTRAINT "coupons_issued_range" CHECK(issued_quantity BETWEEN 0 AND quantity),
	CONSTRAINT "coupons_window" CHECK(ends_at > starts_at),
	CONSTRAINT "coupons_valid_days_positive" CHECK(valid_days >= 1)
);
--> statement-breakpoint
CREATE TABLE `idempotency_keys` (
	`user_id` integer NOT NULL,
	`key` text NOT NULL,
	`scope` text NOT NULL,
	`request_hash` text NOT NULL,
	`status_code` integer,
	`response_body` text,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	PRIMARY KEY(`user_id`, `key`)
);
--> statement-breakpoint
CREATE INDEX `idempotency_keys_expires_idx` ON `idempotency_keys` (`expires_at`);--> statement-breakpoint
CREATE TABLE `order_items` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`order_id` integer NOT NULL,
	`product_id` integer NOT NULL,
	`quantity` integer NOT NULL,
	`unit_price` integer NOT NULL,
	`amount` integer NOT NULL,
	`paid_at` integer,
	FOREIGN KEY (`order_id`) REFERENCES `orders`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`product_id`) REFERENCES `products`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "order_items_quantity_range" CHECK(quantity BETWEEN 1 AND 1000),
	CONSTRAINT "order_items_unit_price_positive" CHECK(unit_price > 0),
	CONSTRAINT "order_items_amount" CHECK(amount = unit_price * quantity)
);
--> statement-breakpoint
CREATE UNIQUE INDEX `order_items_order_product_uq` ON `order_items` (`order_id`,`product_id`);--> statement-breakpoint
CREATE INDEX `order_items_paid_at_product_idx` ON `order_items` (`paid_at`,`product_id`,`quantity`);--> statement-breakpoint
CREATE TABLE `orders` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`user_id` integer NOT NULL,
	`user_coupon_id` integer,
	`status` text NOT NULL,
	`items_amount` integer NOT NULL,
	`discount_amount` integer DEFAULT 0 NOT NULL,
	`total_amount` integer NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`paid_at` integer,
	`closed_at` integer,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`user_coupon_id`) REFERENCES `user_coupons`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "orders_status" CHECK(status IN ('PENDING','NOT_PAID','PAID','EXPIRED','CANCELLED','FAILED')),
	CONSTRAINT "orders_amounts" CHECK(items_amount >= 0 AND discount_amount BETWEEN 0 AND items_amount AND total_amount = items_amount - discount_amount),
	CONSTRAINT "orders_paid_at" CHECK((status = 'PAID') = (paid_at IS NOT NULL))
);
--> statement-breakpoint
CREATE INDEX `orders_user_id_idx` ON `orders` (`user_id`,`id`);--> statement-breakpoint
CREATE INDEX `orders_status_expires_idx` ON `orders` (`status`,`expires_at`);--> statement-breakpoint
CREATE TABLE `outbox` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`event_id` text NOT NULL,
	`type` text NOT NULL,
	`aggregate_id` text NOT NULL,
	`payload` text NOT NULL,
	`status` text DEFAULT 'PENDING' NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`last_error` text,
	`created_at` integer NOT NULL,
	`published_at` integer,
	CONSTRAINT "outbox_status" CHECK(status IN ('PENDING','PUBLISHED'))
);
--> statement-breakpoint
CREATE UNIQUE INDEX `outbox_event_id_uq` ON `outbox` (`event_id`);--> statement-breakpoint
CREATE INDEX `outbox_status_next_idx` ON `outbox` (`status`,`next_attempt_at`,`id`);--> statement-breakpoint
CREATE TABLE `point_history` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`user_id` integer NOT NULL,
	`type` text NOT NULL,
	`amount` integer NOT NULL,
	`balance_after` integer NOT NULL,
	`order_id` integer,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "point_history_type" CHECK(type IN ('CHARGE','USE','REFUND')),
	CONSTRAINT "point_history_amount_positive" CHECK(amount > 0),
	CONSTRAINT "point_history_balance_after_range" CHECK(balance_after BETWEEN 0 AND 5000000)
);
--> statement-breakpoint
CREATE INDEX `point_history_user_id_idx` ON `point_history` (`user_id`,`id`);--> statement-breakpoint
CREATE TABLE `products` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`price` integer NOT NULL,
	`stock` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	CONSTRAINT "products_price_positive" CHECK(price > 0),
	CONSTRAINT "products_stock_non_negative" CHECK(stock >= 0)
);
--> statement-breakpoint
CREATE TABLE `user_balances` (
	`user_id` integer PRIMARY KEY NOT NULL,
	`balance` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "user_balances_balance_range" CHECK(balance BETWEEN 0 AND 5000000)
);
--> statement-breakpoint
CREATE TABLE `user_coupons` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`user_id` integer NOT NULL,
	`coupon_id` integer NOT NULL,
	`issued_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	`order_id` integer,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`coupon_id`) REFERENCES `coupons`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "user_coupons_used_consistent" CHECK((used_at IS NULL) = (order_id IS NULL))
);
--> statement-breakpoint
CREATE UNIQUE INDEX `user_coupons_user_coupon_uq` ON `user_coupons` (`user_id`,`coupon_id`);--> statement-breakpoint
CREATE INDEX `user_coupons_coupon_id_idx` ON `user_coupons` (`coupon_id`);--> statement-breakpoint
CREATE TABLE `users` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`created_at` integer NOT NULL
);
