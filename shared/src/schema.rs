// @generated automatically by Diesel CLI.

diesel::table! {
    messages (id) {
        id -> Uuid,
        content -> Text,
        created_at -> Timestamptz,
        stored_at -> Timestamptz,
    }
}
