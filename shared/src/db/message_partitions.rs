//! The partitions of `messages` (by `created_at`): listed, created ahead
//! and dropped whole past the retention, through the SQL functions of the
//! migration that partitioned the table (they run as its owner: the
//! runtime roles may not create or drop tables).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};

/// One partition of `messages`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Partition {
    /// Its table's name (schema `pipeline_partitions`).
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its first `created_at`; `None`: from the beginning (or the default).
    #[diesel(sql_type = Nullable<Timestamptz>, column_name = lower_bound)]
    pub lower: Option<DateTime<Utc>>,
    /// The `created_at` it stops before; `None`: the default partition.
    #[diesel(sql_type = Nullable<Timestamptz>, column_name = upper_bound)]
    pub upper: Option<DateTime<Utc>>,
    /// Whether it is the default partition (rows no other one covers).
    #[diesel(sql_type = Bool)]
    pub is_default: bool,
    /// Its size on disk, indexes and TOAST included.
    #[diesel(sql_type = BigInt)]
    pub bytes: i64,
}

/// Every partition, oldest first, the default last.
pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<Partition>> {
    diesel::sql_query("SELECT * FROM pipeline_message_partitions()").load(conn)
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Create the partition `[lower, upper)`, taking over the rows the default
/// partition holds in that range. Returns its name.
pub fn create(
    conn: &mut PgConnection,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
) -> QueryResult<String> {
    diesel::sql_query("SELECT pipeline_create_message_partition($1, $2) AS name")
        .bind::<Timestamptz, _>(lower)
        .bind::<Timestamptz, _>(upper)
        .get_result::<Name>(conn)
        .map(|n| n.name)
}

/// Drop every partition (never the default) that ends at or before
/// `before`. Returns their names.
pub fn drop_before(conn: &mut PgConnection, before: DateTime<Utc>) -> QueryResult<Vec<String>> {
    diesel::sql_query("SELECT pipeline_drop_message_partitions($1) AS name")
        .bind::<Timestamptz, _>(before)
        .load::<Name>(conn)
        .map(|names| names.into_iter().map(|n| n.name).collect())
}
