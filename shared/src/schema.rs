// @generated automatically by Diesel CLI.

diesel::table! {
    batches (id) {
        id -> Uuid,
        total -> Int4,
        callback_url -> Nullable<Text>,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        status -> Text,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        reason -> Text,
        attempts -> Int4,
        dead_lettered_at -> Timestamptz,
        batch_id -> Nullable<Uuid>,
        kind -> Text,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Bytea,
        created_at -> Timestamptz,
        timed_ids -> Bool,
    }
}

diesel::table! {
    messages (id, created_at) {
        id -> Uuid,
        content -> Text,
        created_at -> Timestamptz,
        stored_at -> Timestamptz,
        txid -> Int8,
        batch_id -> Nullable<Uuid>,
        kind -> Text,
    }
}

diesel::table! {
    scheduled_messages (id) {
        id -> Uuid,
        deliver_at -> Timestamptz,
        body -> Text,
        kind -> Text,
        batch_id -> Nullable<Uuid>,
        state -> Text,
        created_at -> Timestamptz,
        lease_until -> Nullable<Timestamptz>,
        settled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        subject_id -> Uuid,
        event_type -> Text,
        url -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    batches,
    dead_letters,
    idempotency_keys,
    messages,
    scheduled_messages,
    webhook_deliveries,
);
