-- GET /orders?userId=&status=: a page of one status, newest first, is a range of (user_id, status, id), not a sort
-- of every order the user ever placed. The unfiltered list reads orders_user_id_idx (user_id, id).
CREATE INDEX `orders_user_status_idx` ON `orders` (`user_id`,`status`,`id`);
