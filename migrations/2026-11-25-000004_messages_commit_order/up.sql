-- GET /messages pages in commit order, not acceptance order: rows commit
-- out of order (retries, outages, concurrent consumers), so a client tailing
-- by (created_at, id) skipped rows that committed behind its cursor.
--
-- Each row records the id of the transaction that inserted it (the
-- transactional-outbox technique). Listing pages by (txid, created_at, id)
-- and only shows rows whose txid is below the xmin of the current snapshot,
-- i.e. whose transaction and every older one have ended: a row can then
-- never commit behind a cursor. bigint rather than xid8 so that Diesel reads
-- it natively; 64-bit transaction ids fit (they would need 2^63 transactions).
--
-- Rows stored before this migration get 0 (listed first, in their old
-- order); the constant default first makes the ADD COLUMN a catalog-only
-- change (no table rewrite), then every new row gets its transaction's id.
ALTER TABLE messages ADD COLUMN txid bigint NOT NULL DEFAULT 0;
ALTER TABLE messages ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX messages_txid_created_at_id_idx ON messages (txid, created_at, id);
DROP INDEX messages_created_at_id_idx;
