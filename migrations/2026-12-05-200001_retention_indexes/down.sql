DROP INDEX batches_completed_at_idx;
ALTER TABLE idempotency_keys RESET (autovacuum_vacuum_scale_factor);
DROP INDEX idempotency_keys_created_at_idx;
ALTER TABLE idempotency_keys DROP COLUMN timed_ids;
