-- One row per accepted message. `id` is the producer's message id, so a
-- redelivered message hits the primary key and is stored once.
CREATE TABLE messages (
    id uuid PRIMARY KEY,
    content text NOT NULL,
    -- When the producer accepted the message (the 202), not when it was stored.
    created_at timestamptz NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- GET /messages pages through (created_at, id) with a keyset cursor.
CREATE INDEX messages_created_at_id_idx ON messages (created_at, id);
