-- Scheduled messages (issue 19): a message accepted with `deliver_at` or
-- `delay_seconds` waits here, durable from its 202, until a producer's
-- dispatcher publishes it when it falls due. PostgreSQL rather than the
-- broker: a million waiting rows are an index on `deliver_at`, cancelling
-- one is an UPDATE, and nothing waits in RabbitMQ (per-message TTL expires
-- only at a queue's head; the delayed-message plugin is archived).
--
-- state:
--   scheduled    waiting for deliver_at
--   dispatching  claimed by a dispatcher until lease_until (its publish is
--                in flight; a dispatcher that died is replaced after it)
--   dispatched   confirmed by the broker, not stored yet
--   delivered    stored: set by the consumer's transaction that stores it
--   cancelled    DELETE /messages/{id}: the consumer refuses to store it
-- The consumer's transaction and the cancel both update the row, so one
-- waits for the other: a message is cancelled or stored, never both.
CREATE TABLE scheduled_messages (
    id uuid PRIMARY KEY,
    deliver_at timestamptz NOT NULL,
    -- The envelope as it will be published (JSON), kind and batch included.
    body text NOT NULL,
    kind text NOT NULL DEFAULT 'default',
    batch_id uuid,
    state text NOT NULL DEFAULT 'scheduled'
        CHECK (state IN ('scheduled', 'dispatching', 'dispatched', 'delivered', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    -- When it left `scheduled`: dispatched, delivered or cancelled (what
    -- the retention prunes by).
    settled_at timestamptz
);

-- The dispatcher's one question: what is due, oldest first.
CREATE INDEX scheduled_messages_due_idx ON scheduled_messages (deliver_at)
    WHERE state = 'scheduled';
-- Claims whose dispatcher died.
CREATE INDEX scheduled_messages_lease_idx ON scheduled_messages (lease_until)
    WHERE state = 'dispatching';
-- The retention: delivered and cancelled rows past their age.
CREATE INDEX scheduled_messages_settled_idx ON scheduled_messages (settled_at)
    WHERE state IN ('delivered', 'cancelled');
