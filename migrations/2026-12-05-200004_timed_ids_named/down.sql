ALTER TABLE idempotency_keys ALTER COLUMN timed_ids SET DEFAULT true;
