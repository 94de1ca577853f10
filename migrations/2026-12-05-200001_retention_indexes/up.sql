-- Retention (issue 18): every table is pruned by age, so each age it is
-- pruned by gets an index, and an Idempotency-Key that expires must not
-- give its next use the id of its last one.

-- An Idempotency-Key is bound for IDEMPOTENCY_KEY_TTL; after that the same
-- key is a new request. Its message ids were derived from the key alone,
-- so a new request with an old key would get the id of the message the
-- key made before, and be dropped as a duplicate of it. Bindings made from
-- now on derive their ids from the key and the binding's time (timed_ids);
-- the rows already there keep the ids they gave (false), so a retry across
-- the upgrade still finds its message. The constant default first keeps
-- the ADD COLUMN a catalog-only change, then new rows get true.
ALTER TABLE idempotency_keys ADD COLUMN timed_ids boolean NOT NULL DEFAULT false;
ALTER TABLE idempotency_keys ALTER COLUMN timed_ids SET DEFAULT true;
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
-- Every key is deleted a TTL after its insert: a steady churn. Vacuumed at
-- the default 20 % of dead rows, the table grows well past its live rows
-- between vacuums (the retention soak saw 35 000 dead beside 45 000 live,
-- no vacuum yet); at 2 % the space is reused sooner.
ALTER TABLE idempotency_keys SET (autovacuum_vacuum_scale_factor = 0.02);

-- Completed batches are pruned after BATCH_RETENTION; pending ones (NULL)
-- are never looked at.
CREATE INDEX batches_completed_at_idx ON batches (completed_at)
    WHERE completed_at IS NOT NULL;
