// @generated automatically by Diesel CLI.

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        reason -> Text,
        attempts -> Int4,
        dead_lettered_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        fingerprint -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        content -> Text,
        created_at -> Timestamptz,
        stored_at -> Timestamptz,
        txid -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(dead_letters, idempotency_keys, messages,);
