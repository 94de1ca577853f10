-- Batches that complete, and the webhook outbox (issue 11).
--
-- A batch's counts are never kept as counters: they are counted from the
-- stored rows (messages.batch_id) and the dead-letter records
-- (dead_letters.batch_id), so they cannot drift. Both columns are NULL for
-- the common message (no batch), and the partial indexes skip those rows,
-- so the hot insert path pays nothing for them.
ALTER TABLE messages ADD COLUMN batch_id uuid;
CREATE INDEX messages_batch_id_idx ON messages (batch_id) WHERE batch_id IS NOT NULL;
ALTER TABLE dead_letters ADD COLUMN batch_id uuid;
CREATE INDEX dead_letters_batch_id_idx ON dead_letters (batch_id) WHERE batch_id IS NOT NULL;

-- One row per batch, written by the consumer that stores (or dead-letters)
-- its first item; every item carries the batch's id, size and callback.
CREATE TABLE batches (
    id uuid PRIMARY KEY,
    total integer NOT NULL CHECK (total > 0),
    callback_url text,
    -- When the producer accepted the batch.
    created_at timestamptz NOT NULL,
    -- Set exactly once per completion, by the transaction that settles the
    -- last item (see pipeline_settle_batches); cleared when a dead letter
    -- of the batch is redriven.
    completed_at timestamptz,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'completed', 'completed_with_failures'))
);

-- The outbox: one row per notification owed, written in the same
-- transaction as the message row, the dead-letter record or the batch
-- completion that makes it owed. Consumers deliver from here.
CREATE TABLE webhook_deliveries (
    -- The `webhook-id` header: the same on every attempt, so receivers
    -- deduplicate on it.
    id uuid PRIMARY KEY,
    -- The message or batch the event is about.
    subject_id uuid NOT NULL,
    event_type text NOT NULL,
    url text NOT NULL,
    -- The exact body sent and signed.
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- When a pending row is due. A consumer that claims a row pushes this
    -- forward by a lease: if it dies mid-delivery the row is due again when
    -- the lease runs out, so a crash means a redelivery, never none.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The last answer: an HTTP status, or an error (timeout, refused...).
    last_status integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (created_at)
    WHERE status = 'failed';
-- Delivered rows are pruned after WEBHOOK_RETENTION_HOURS.
CREATE INDEX webhook_deliveries_delivered_idx ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';
CREATE INDEX webhook_deliveries_subject_idx ON webhook_deliveries (subject_id, created_at);

-- RFC 3339 in UTC with microseconds, whatever the session's TimeZone.
CREATE FUNCTION pipeline_rfc3339(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- The row-by-row insert, now with the batch id (the three-argument
-- version stays for rows without one).
CREATE FUNCTION pipeline_try_insert(p_id uuid, p_content text, p_created_at timestamptz, p_batch_id uuid)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO messages (id, content, created_at, batch_id)
    VALUES (p_id, p_content, p_created_at, p_batch_id)
    ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        RETURN 'inserted';
    END IF;
    RETURN 'duplicate';
EXCEPTION WHEN OTHERS THEN
    RETURN 'error:' || SQLSTATE || ':' || SQLERRM;
END
$$;

-- Owe a `message.stored` notification for each new row in p_ids, to the
-- URL at the same position of p_urls. Call in the transaction that
-- inserted the rows.
CREATE FUNCTION pipeline_owe_stored(p_ids uuid[], p_urls text[]) RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO webhook_deliveries (id, subject_id, event_type, url, payload)
    SELECT gen_random_uuid(), m.id, 'message.stored', u.url,
           jsonb_build_object(
               'type', 'message.stored',
               'id', m.id,
               'status', 'stored',
               'timestamp', pipeline_rfc3339(clock_timestamp()),
               'data', jsonb_build_object(
                   'id', m.id,
                   'status', 'stored',
                   'content', m.content,
                   'timestamp', pipeline_rfc3339(m.created_at),
                   'stored_at', pipeline_rfc3339(m.stored_at),
                   'batch_id', m.batch_id))::text
    FROM unnest(p_ids, p_urls) AS u(id, url)
    JOIN messages m ON m.id = u.id
    WHERE u.url IS NOT NULL;
$$;

-- Record a dead letter and, when the record is new and the message has a
-- callback, owe a `message.dead_lettered` notification, in the same
-- transaction. With p_overwrite the latest reason wins (the consumer's own
-- dead letters); without, an existing record is kept (the index of dead
-- letters the broker made). Returns whether the record is new.
CREATE FUNCTION pipeline_record_dead_letter(
    p_id uuid, p_reason text, p_attempts integer, p_batch_id uuid, p_url text,
    p_overwrite boolean)
RETURNS boolean
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
    IF v_new AND p_url IS NOT NULL THEN
        INSERT INTO webhook_deliveries (id, subject_id, event_type, url, payload)
        VALUES (gen_random_uuid(), p_id, 'message.dead_lettered', p_url,
            jsonb_build_object(
                'type', 'message.dead_lettered',
                'id', p_id,
                'status', 'dead_lettered',
                'timestamp', pipeline_rfc3339(v_at),
                'data', jsonb_build_object(
                    'id', p_id,
                    'status', 'dead_lettered',
                    'reason', p_reason,
                    'attempts', p_attempts,
                    'dead_lettered_at', pipeline_rfc3339(v_at),
                    'batch_id', p_batch_id))::text);
    END IF;
    RETURN v_new;
END
$$;

-- Complete every batch of p_ids whose items are all settled, exactly once.
--
-- Each batch row is locked FOR UPDATE first, in id order (no deadlocks
-- between two consumers settling the same batches); the counts are taken
-- by later statements, which under READ COMMITTED see everything committed
-- before the lock was granted. So of two transactions settling the last
-- two items concurrently, the second to get the lock sees both items and
-- completes the batch, and the first sees only its own and does not:
-- exactly one transaction completes it, and the completion commits with
-- the item that caused it (a crash loses neither or both).
-- Returns the batches completed, with their counts.
CREATE FUNCTION pipeline_settle_batches(p_ids uuid[])
RETURNS TABLE (id uuid, status text, total integer, stored bigint, dead_lettered bigint)
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
        IF v_url IS NOT NULL THEN
            INSERT INTO webhook_deliveries (id, subject_id, event_type, url, payload)
            VALUES (gen_random_uuid(), v_batch, 'batch.completed', v_url,
                jsonb_build_object(
                    'type', 'batch.completed',
                    'id', v_batch,
                    'status', v_status,
                    'timestamp', pipeline_rfc3339(v_at),
                    'data', jsonb_build_object(
                        'id', v_batch,
                        'status', v_status,
                        'total', v_total,
                        'stored', v_stored,
                        'dead_lettered', v_dead,
                        'pending', 0,
                        'created_at', pipeline_rfc3339(v_created),
                        'completed_at', pipeline_rfc3339(v_at)))::text);
        END IF;
        id := v_batch; status := v_status; total := v_total;
        stored := v_stored; dead_lettered := v_dead;
        RETURN NEXT;
    END LOOP;
END
$$;
