-- Index ranges for the cron jobs, so each run reads the rows it acts on and not the shop's history.
-- Event retention: delivery records by age (every record; the table has no other order by time).
CREATE INDEX `event_deliveries_delivered_at_idx` ON `event_deliveries` (`delivered_at`);--> statement-breakpoint
-- Event retention: replayed dead letters by age (partial: letters awaiting an admin are not in it).
CREATE INDEX `dead_letters_replayed_at_idx` ON `dead_letters` (`replayed_at`) WHERE replayed_at IS NOT NULL;--> statement-breakpoint
-- Failed-attempt purge: FAILED placement attempts by last change (partial: paid and expired history are not in it).
CREATE INDEX `orders_failed_idx` ON `orders` (`updated_at`) WHERE status = 'FAILED';
