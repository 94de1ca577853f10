CREATE INDEX messages_created_at_id_idx ON messages (created_at, id);
DROP INDEX messages_txid_created_at_id_idx;
ALTER TABLE messages DROP COLUMN txid;
