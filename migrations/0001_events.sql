CREATE TABLE `dead_letters` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`event_id` text NOT NULL,
	`type` text NOT NULL,
	`payload` text NOT NULL,
	`attempts` integer NOT NULL,
	`created_at` integer NOT NULL,
	`replayed_at` integer
);
--> statement-breakpoint
CREATE INDEX `dead_letters_event_id_idx` ON `dead_letters` (`event_id`);--> statement-breakpoint
CREATE TABLE `event_deliveries` (
	`event_id` text PRIMARY KEY NOT NULL,
	`type` text NOT NULL,
	`delivered_at` integer NOT NULL
);
