-- One row per message id the consumer dead-lettered, so that
-- GET /messages/{id} can say "dead_lettered" and why. The message itself
-- waits in the messages.dead queue; this is the index over it.
CREATE TABLE dead_letters (
    id uuid PRIMARY KEY,
    reason text NOT NULL,
    attempts integer NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
