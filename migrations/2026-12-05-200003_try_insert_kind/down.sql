DROP FUNCTION pipeline_try_insert(uuid, text, timestamptz, uuid, text);
