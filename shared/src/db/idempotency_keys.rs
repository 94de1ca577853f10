//! The `idempotency_keys` table: each `Idempotency-Key` bound, first come
//! first served, to the fingerprint of the request it was first used with.

use diesel::prelude::*;

use crate::schema::idempotency_keys;

/// An `Idempotency-Key` bound to the request it was first used with.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = idempotency_keys)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewIdempotencyKey<'a> {
    /// `message` (`POST /messages`) or `batch` (`POST /messages/batch`).
    pub scope: &'a str,
    /// The key as the client sent it.
    pub key: &'a str,
    /// SHA-256 of the canonical request.
    pub fingerprint: &'a [u8],
}

/// Bind an `Idempotency-Key` to a request fingerprint, first come first
/// served, and return the fingerprint it is bound to: `record`'s own when
/// this call bound it (or an equal one did before), another when the key
/// was first used with another request. Safe under concurrency: of two
/// first uses racing, the primary key lets one insert win and the other
/// reads the winner (each statement commits on its own, so the read sees it).
pub fn bind(conn: &mut PgConnection, record: &NewIdempotencyKey<'_>) -> QueryResult<Vec<u8>> {
    use idempotency_keys::dsl;
    let inserted = diesel::insert_into(dsl::idempotency_keys)
        .values(record)
        .on_conflict((dsl::scope, dsl::key))
        .do_nothing()
        .returning(dsl::fingerprint)
        .get_result::<Vec<u8>>(conn)
        .optional()?;
    match inserted {
        Some(fingerprint) => Ok(fingerprint),
        None => dsl::idempotency_keys
            .find((record.scope, record.key))
            .select(dsl::fingerprint)
            .first(conn),
    }
}
