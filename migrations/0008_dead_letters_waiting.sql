-- The operator console's backlog (GET /admin/stats): dead letters awaiting an admin, counted as a range of this
-- index (partial: replayed letters, the growing history, are not in it).
CREATE INDEX `dead_letters_waiting_idx` ON `dead_letters` (`id`) WHERE replayed_at IS NULL;
