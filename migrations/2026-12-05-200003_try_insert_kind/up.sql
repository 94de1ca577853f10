-- The row-by-row insert with the message's kind (issue 17 beside issue 18).
-- The slow path used to insert with the older functions and then set a
-- non-default kind with an UPDATE, which the consumer's role may not run
-- (it may only insert into messages): the row was refused, and in a
-- transaction with a batch's bookkeeping the whole batch was held for ever.
-- The older overloads stay, for consumers of before kinds during a rolling
-- upgrade. NULL stands for the column's default kind.
CREATE FUNCTION pipeline_try_insert(p_id uuid, p_content text, p_created_at timestamptz,
                                    p_batch_id uuid, p_kind text)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO messages (id, content, created_at, batch_id, kind)
    VALUES (p_id, p_content, p_created_at, p_batch_id, coalesce(p_kind, 'default'))
    ON CONFLICT (id, created_at) DO NOTHING;
    IF FOUND THEN
        RETURN 'inserted';
    END IF;
    RETURN 'duplicate';
EXCEPTION WHEN OTHERS THEN
    RETURN 'error:' || SQLSTATE || ':' || SQLERRM;
END
$$;
