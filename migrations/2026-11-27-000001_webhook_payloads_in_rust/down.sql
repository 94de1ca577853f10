DROP FUNCTION IF EXISTS pipeline_complete_batches(uuid[]);
DROP FUNCTION IF EXISTS pipeline_put_dead_letter(uuid, text, integer, uuid, boolean);
