-- GET /messages?kind= (issue 17) pages one kind in commit order. The
-- commit-order index (txid, created_at, id) serves it only by reading
-- every other kind's rows on the way, which for a rare kind is nearly the
-- whole table; this index leads with the kind and keeps the same order.
--
-- Partial: default-kind rows (every message of a client that names no
-- kind, i.e. the common path) are not in it, so their inserts maintain no
-- extra B-tree and cost what they did. A filter on `default` uses the
-- commit-order index, where those rows are the bulk. The query states the
-- predicate `kind <> 'default'` literally, so the planner matches this
-- index whatever value the kind is bound as.
--
-- On the partitioned parent: created on every partition, and on each new
-- one when it is attached (pipeline_create_message_partition).
CREATE INDEX messages_kind_txid_created_at_id_idx ON messages (kind, txid, created_at, id)
    WHERE kind <> 'default';
