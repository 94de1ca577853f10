-- Insert one message and say what happened, SQLSTATE included.
--
-- Diesel reports most PostgreSQL errors as "Unknown" without their SQLSTATE,
-- so the consumer cannot tell a full disk (53100) or a deadlock (40P01)
-- from a row that can never be stored. When a batch insert fails, the
-- consumer stores its rows one by one through this function, which catches
-- the error and returns 'error:<SQLSTATE>:<message>' instead of raising it.
-- 'inserted' and 'duplicate' mean the row is stored. Only failure paths
-- call it: the batch insert stays a plain multi-row INSERT.
CREATE FUNCTION pipeline_try_insert(p_id uuid, p_content text, p_created_at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO messages (id, content, created_at)
    VALUES (p_id, p_content, p_created_at)
    ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        RETURN 'inserted';
    END IF;
    RETURN 'duplicate';
EXCEPTION WHEN OTHERS THEN
    RETURN 'error:' || SQLSTATE || ':' || SQLERRM;
END
$$;
