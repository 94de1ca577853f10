-- Stored messages partitioned by time (issue 18): a partition per day,
-- week or month of created_at (MESSAGE_PARTITION), created ahead of time
-- and dropped whole once past MESSAGE_RETENTION, by the consumers'
-- retention: no mass DELETE, no bloat, no vacuum storm.
--
-- The primary key must include the partition key: (id, created_at).
-- created_at is set at the 202 and travels in the envelope (an
-- Idempotency-Key's retries carry the time of the first), so a redelivery
-- hits the same partition and the same key, and ON CONFLICT still stores
-- it once. (An envelope without a created_at of its own is checked by id
-- first: see shared::db::messages.)
--
-- The existing table is not copied: it becomes the first partition, from
-- MINVALUE to the time of this migration, in place. Its indexes are
-- attached as they are; only the new primary key's unique index
-- (id, created_at) is built, and the partition bound is checked, one scan
-- each, under the migration's lock: ingest waits for them (the consumers
-- hold their messages meanwhile, nothing is lost). See
-- docs/operations.md#partitioned-messages for the time per million rows.
--
-- Partitions live in a schema of their own, pipeline_partitions: the
-- runtime roles reach them only through the parent `messages` (its
-- privileges), and the tables of the public schema stay the ones
-- shared::roles lists.

CREATE SCHEMA pipeline_partitions;

ALTER TABLE messages RENAME TO messages_legacy;
-- A partition's primary key is the parent's: (id, created_at), built when
-- it is attached below. Lookups by id use its leading column.
ALTER TABLE messages_legacy DROP CONSTRAINT messages_pkey;

-- The parent: the same columns, defaults and checks (whatever columns
-- earlier migrations added), partitioned.
CREATE TABLE messages (LIKE messages_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                       INCLUDING STORAGE INCLUDING COMMENTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (id, created_at);

-- Every other index of the table, on the parent, under its own name: the
-- legacy table's are renamed, and attached to the parent's when the table
-- becomes a partition (equal definitions: nothing is rebuilt).
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'public.messages_legacy'::regclass AND NOT i.indisprimary
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', v.name, v.name || '_legacy');
        EXECUTE format('CREATE INDEX %I ON messages %s', v.name,
                       substring(v.def from ' USING .*$'));
    END LOOP;
END
$$;

-- The table as it is, up to now (or its newest row, if one is ahead of
-- the clock), becomes a partition; an empty one (a new install) is
-- dropped, so every partition follows MESSAGE_PARTITION.
ALTER TABLE messages_legacy SET SCHEMA pipeline_partitions;
DO $$
DECLARE
    v_upper timestamptz := greatest(now(),
        (SELECT max(created_at) + interval '1 microsecond' FROM pipeline_partitions.messages_legacy));
BEGIN
    IF EXISTS (SELECT 1 FROM pipeline_partitions.messages_legacy) THEN
        EXECUTE format('ALTER TABLE messages ATTACH PARTITION pipeline_partitions.messages_legacy
                        FOR VALUES FROM (MINVALUE) TO (%L)', v_upper);
    ELSE
        DROP TABLE pipeline_partitions.messages_legacy;
    END IF;
END
$$;

-- Whatever no partition covers lands here: an insert never fails for want
-- of a partition. The retention creates partitions ahead, so it stays
-- empty; a partition created for rows already here takes them over.
CREATE TABLE pipeline_partitions.messages_default PARTITION OF messages DEFAULT;

-- The row-by-row inserts, on the new key.
CREATE OR REPLACE FUNCTION pipeline_try_insert(p_id uuid, p_content text, p_created_at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO messages (id, content, created_at)
    VALUES (p_id, p_content, p_created_at)
    ON CONFLICT (id, created_at) DO NOTHING;
    IF FOUND THEN
        RETURN 'inserted';
    END IF;
    RETURN 'duplicate';
EXCEPTION WHEN OTHERS THEN
    RETURN 'error:' || SQLSTATE || ':' || SQLERRM;
END
$$;

CREATE OR REPLACE FUNCTION pipeline_try_insert(p_id uuid, p_content text, p_created_at timestamptz, p_batch_id uuid)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO messages (id, content, created_at, batch_id)
    VALUES (p_id, p_content, p_created_at, p_batch_id)
    ON CONFLICT (id, created_at) DO NOTHING;
    IF FOUND THEN
        RETURN 'inserted';
    END IF;
    RETURN 'duplicate';
EXCEPTION WHEN OTHERS THEN
    RETURN 'error:' || SQLSTATE || ':' || SQLERRM;
END
$$;

-- The partitions of messages with their bounds (NULL: MINVALUE, or the
-- default partition) and sizes, oldest first.
CREATE FUNCTION pipeline_message_partitions()
RETURNS TABLE (name text, lower_bound timestamptz, upper_bound timestamptz,
               is_default boolean, bytes bigint)
LANGUAGE sql STABLE
AS $$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
           pg_total_relation_size(c.oid)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'public.messages'::regclass
    ORDER BY 3 NULLS LAST;
$$;

-- Create the partition [p_lower, p_upper), moving into it any rows the
-- default partition holds for that range (in this transaction, so no row
-- is ever in neither). The runtime roles may not create tables: this runs
-- as its owner (SECURITY DEFINER), and can do nothing but this, with its
-- search path pinned. A short lock_timeout: if ingest holds the parent,
-- give up and let the next round try, rather than queue ingest behind.
CREATE FUNCTION pipeline_create_message_partition(p_lower timestamptz, p_upper timestamptz)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
SET lock_timeout = '1s'
AS $$
DECLARE
    v_name text := 'messages_p' || to_char(p_lower AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS');
BEGIN
    IF p_lower IS NULL OR p_upper IS NULL OR p_lower >= p_upper THEN
        RAISE EXCEPTION 'bad partition bounds [%, %)', p_lower, p_upper;
    END IF;
    EXECUTE format('CREATE TABLE pipeline_partitions.%I (LIKE public.messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
    EXECUTE format('WITH moved AS (DELETE FROM pipeline_partitions.messages_default
                                    WHERE created_at >= %L AND created_at < %L RETURNING *)
                    INSERT INTO pipeline_partitions.%I SELECT * FROM moved', p_lower, p_upper, v_name);
    EXECUTE format('ALTER TABLE public.messages ATTACH PARTITION pipeline_partitions.%I
                    FOR VALUES FROM (%L) TO (%L)', v_name, p_lower, p_upper);
    RETURN v_name;
END
$$;

-- Drop every partition (not the default) whose range ends at or before
-- p_before; returns their names. As its owner, as above.
CREATE FUNCTION pipeline_drop_message_partitions(p_before timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
SET lock_timeout = '1s'
AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN
        SELECT p.name FROM public.pipeline_message_partitions() p
        WHERE NOT p.is_default AND p.upper_bound <= p_before
    LOOP
        EXECUTE format('DROP TABLE pipeline_partitions.%I', v_name);
        RETURN NEXT v_name;
    END LOOP;
END
$$;

-- Only the pipeline's roles run the two that change the schema (the
-- migration step grants EXECUTE to the consumer's: shared::roles).
REVOKE EXECUTE ON FUNCTION pipeline_create_message_partition(timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pipeline_drop_message_partitions(timestamptz) FROM PUBLIC;
