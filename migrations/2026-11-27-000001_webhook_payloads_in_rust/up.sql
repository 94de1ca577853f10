-- Webhook bodies are built in Rust now (shared::events::Notification), from
-- the same type as the status body and the completion event, and the
-- consumer owes them in the same transaction as the row they report on.
-- These two functions do what pipeline_record_dead_letter and
-- pipeline_settle_batches did, without the notification, and return what
-- the notification needs.
--
-- The functions of 2026-11-26-000001 stay: a consumer of the previous
-- version, still running during a rolling upgrade, calls them (and they
-- write the same bodies). pipeline_owe_stored is no longer called by this
-- version.

-- Record a dead letter. With p_overwrite the latest reason wins (the
-- consumer's own dead letters); without, an existing record is kept (the
-- index of dead letters the broker made). Returns the time of the record
-- when it is new, NULL when one existed: only a new record owes a
-- `message.dead_lettered` notification.
CREATE FUNCTION pipeline_put_dead_letter(
    p_id uuid, p_reason text, p_attempts integer, p_batch_id uuid, p_overwrite boolean)
RETURNS timestamptz
LANGUAGE plpgsql
AS $$
DECLARE
    v_new boolean;
    v_at timestamptz := clock_timestamp();
BEGIN
    IF p_overwrite THEN
        INSERT INTO dead_letters AS d (id, reason, attempts, dead_lettered_at, batch_id)
        VALUES (p_id, p_reason, p_attempts, v_at, p_batch_id)
        ON CONFLICT (id) DO UPDATE
            SET reason = EXCLUDED.reason,
                attempts = EXCLUDED.attempts,
                dead_lettered_at = EXCLUDED.dead_lettered_at,
                batch_id = coalesce(d.batch_id, EXCLUDED.batch_id)
        RETURNING (xmax = 0) INTO v_new;
    ELSE
        INSERT INTO dead_letters (id, reason, attempts, dead_lettered_at, batch_id)
        VALUES (p_id, p_reason, p_attempts, v_at, p_batch_id)
        ON CONFLICT (id) DO NOTHING;
        v_new := FOUND;
    END IF;
    IF v_new THEN
        RETURN v_at;
    END IF;
    RETURN NULL;
END
$$;

-- Complete every batch of p_ids whose items are all settled, exactly once,
-- and return them with their counts, times and callback (the caller owes
-- `batch.completed` in the same transaction).
--
-- Each batch row is locked FOR UPDATE first, in id order (no deadlocks
-- between two consumers settling the same batches); the counts are taken
-- by later statements, which under READ COMMITTED see everything committed
-- before the lock was granted. So of two transactions settling the last
-- two items concurrently, the second to get the lock sees both items and
-- completes the batch, and the first sees only its own and does not:
-- exactly one transaction completes it, and the completion (with the
-- notification the caller owes) commits with the item that caused it.
CREATE FUNCTION pipeline_complete_batches(p_ids uuid[])
RETURNS TABLE (id uuid, status text, total integer, stored bigint, dead_lettered bigint,
               created_at timestamptz, completed_at timestamptz, callback_url text)
LANGUAGE plpgsql
AS $$
DECLARE
    v_batch uuid;
    v_total integer;
    v_url text;
    v_created timestamptz;
    v_stored bigint;
    v_dead bigint;
    v_status text;
    v_at timestamptz;
BEGIN
    FOR v_batch IN SELECT DISTINCT b FROM unnest(p_ids) AS b WHERE b IS NOT NULL ORDER BY 1 LOOP
        SELECT bt.total, bt.callback_url, bt.created_at INTO v_total, v_url, v_created
        FROM batches bt WHERE bt.id = v_batch AND bt.completed_at IS NULL
        FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) INTO v_stored FROM messages m WHERE m.batch_id = v_batch;
        SELECT count(*) INTO v_dead FROM dead_letters d
        WHERE d.batch_id = v_batch
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id);
        CONTINUE WHEN v_stored + v_dead < v_total;
        v_status := CASE WHEN v_dead = 0 THEN 'completed' ELSE 'completed_with_failures' END;
        v_at := clock_timestamp();
        UPDATE batches bt SET completed_at = v_at, status = v_status WHERE bt.id = v_batch;
        id := v_batch; status := v_status; total := v_total;
        stored := v_stored; dead_lettered := v_dead;
        created_at := v_created; completed_at := v_at; callback_url := v_url;
        RETURN NEXT;
    END LOOP;
END
$$;
