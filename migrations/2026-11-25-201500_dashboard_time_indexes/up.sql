-- The dashboard charts rows stored and dead-lettered per second over the
-- last minutes (WHERE stored_at >= now() - '5 min'). Both tables are
-- appended to in time order, so a BRIN index (a few pages, next to nothing
-- to maintain on insert, unlike a B-tree) narrows that scan to the newest
-- block ranges instead of the whole table.
CREATE INDEX messages_stored_at_brin ON messages USING brin (stored_at);
CREATE INDEX dead_letters_dead_lettered_at_brin ON dead_letters USING brin (dead_lettered_at);
