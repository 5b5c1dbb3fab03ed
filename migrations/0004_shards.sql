CREATE TABLE `product_stock_shards` (
	`product_id` integer NOT NULL,
	`shard` integer NOT NULL,
	`available` integer NOT NULL,
	`stamp` integer NOT NULL,
	PRIMARY KEY(`product_id`, `shard`),
	FOREIGN KEY (`product_id`) REFERENCES `products`(`id`) ON UPDATE no action ON DELETE no action,
	CONSTRAINT "product_stock_shards_available" CHECK(available >= 0),
	CONSTRAINT "product_stock_shards_shard" CHECK(shard >= 0)
);
--> statement-breakpoint
ALTER TABLE `coupons` ADD `shards` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `order_items` ADD `stock_shard` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `products` ADD `stock_shards` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
-- Every existing product's stock was one object's: it becomes shard 0's row (products.stock is their sum from now on).
INSERT INTO `product_stock_shards` (`product_id`, `shard`, `available`, `stamp`) SELECT `id`, 0, `stock`, `updated_at` FROM `products`;
