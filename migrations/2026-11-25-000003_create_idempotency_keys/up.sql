-- Idempotency-Key records (IETF httpapi Idempotency-Key draft): each key is
-- bound to the fingerprint of the first request that used it, so a reuse
-- with another request is refused (422) instead of being accepted and then
-- dropped by the messages primary key. `scope` keeps single POSTs and
-- batches apart: the same key on both means two different things.
CREATE TABLE idempotency_keys (
    scope text NOT NULL CHECK (scope IN ('message', 'batch')),
    key text NOT NULL,
    -- SHA-256 of the canonical request (endpoint and contents).
    fingerprint bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
