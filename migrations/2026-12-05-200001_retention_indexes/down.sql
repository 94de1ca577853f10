DROP INDEX batches_completed_at_idx;
DROP INDEX idempotency_keys_created_at_idx;
ALTER TABLE idempotency_keys DROP COLUMN timed_ids;
