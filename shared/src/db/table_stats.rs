//! How big each table is and how old its oldest row: what the retention
//! exports (`/metrics`) and the dashboard shows. Row counts are
//! PostgreSQL's live-tuple statistics (no `count(*)` scan); a partitioned
//! table counts its partitions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

/// Every table of the pipeline, and the column its age is read from.
pub const TABLES: [(&str, &str); 6] = [
    ("messages", "created_at"),
    ("dead_letters", "dead_lettered_at"),
    ("idempotency_keys", "created_at"),
    ("batches", "created_at"),
    ("webhook_deliveries", "created_at"),
    ("scheduled_messages", "created_at"),
];

/// One table's figures.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, serde::Serialize)]
pub struct TableStats {
    /// The table.
    #[diesel(sql_type = Text)]
    pub table: String,
    /// Live rows (PostgreSQL's statistics: an estimate, kept current by
    /// every insert and delete).
    #[diesel(sql_type = BigInt)]
    pub rows: i64,
    /// On disk, indexes and TOAST included.
    #[diesel(sql_type = BigInt)]
    pub bytes: i64,
}

/// The size of every table (cheap: catalog and statistics only).
pub fn sizes(conn: &mut PgConnection) -> QueryResult<Vec<TableStats>> {
    let names: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    diesel::sql_query(
        "SELECT t.name AS table, coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::int8 AS rows,
                coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 AS bytes
           FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
           JOIN pg_class c ON c.oid = to_regclass(t.name)
                           OR c.oid IN (SELECT inhrelid FROM pg_inherits
                                         WHERE inhparent = to_regclass(t.name))
          GROUP BY t.name, t.n ORDER BY t.n",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(&names)
    .load(conn)
}

#[derive(QueryableByName)]
struct OldestRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Readable {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

/// Whether this session's role may read `table`.
fn readable(conn: &mut PgConnection, table: &str) -> QueryResult<bool> {
    diesel::sql_query("SELECT has_table_privilege($1, 'SELECT') AS ok")
        .bind::<Text, _>(table)
        .get_result::<Readable>(conn)
        .map(|r| r.ok)
}

/// A table and the time of its oldest row (`None`: empty, or unknown).
pub type Oldest = (&'static str, Option<DateTime<Utc>>);

/// The time of the oldest row of each table (`None`: empty, unknown, or
/// not readable by this role).
/// For `messages`, the start of its oldest partition holding rows (a
/// `min()` over a partitioned table of years would read all of it; the
/// retention drops partitions, so their starts are what it moves); the
/// others are bounded by their retention and read with `min()`.
pub fn oldest(conn: &mut PgConnection) -> QueryResult<Vec<Oldest>> {
    let mut out = Vec::with_capacity(TABLES.len());
    for (table, column) in TABLES {
        let sql = if table == "messages" {
            // By the catalog, not by name: the runtime roles have no
            // USAGE on the partitions' schema.
            "SELECT min(p.lower_bound) AS at FROM pipeline_message_partitions() p
               JOIN pg_class c ON c.relname = p.name
               JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'pipeline_partitions'
              WHERE NOT p.is_default AND pg_stat_get_live_tuples(c.oid) > 0"
                .to_owned()
        } else if readable(conn, table)? {
            format!("SELECT min({column}) AS at FROM {table}")
        } else {
            // The consumer's role never sees the idempotency keys.
            out.push((table, None));
            continue;
        };
        let at = diesel::sql_query(sql).get_result::<OldestRow>(conn)?.at;
        out.push((table, at));
    }
    Ok(out)
}
