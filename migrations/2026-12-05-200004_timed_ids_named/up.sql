-- A binding's timed_ids is named by the producers that derive ids from the
-- key and its time; a row that does not name it is a producer's of before
-- keys expired (a rolling upgrade), which answered with the id of the key
-- alone: false, so that a retry reaching a new producer gets that same id
-- and the message is not stored twice.
ALTER TABLE idempotency_keys ALTER COLUMN timed_ids SET DEFAULT false;
