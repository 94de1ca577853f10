//! Checking the rows a load run produced.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Timestamptz};
use uuid::Uuid;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Quantiles {
    #[diesel(sql_type = Double)]
    p50: f64,
    #[diesel(sql_type = Double)]
    p99: f64,
}

fn count_since(conn: &mut PgConnection, since: DateTime<Utc>) -> QueryResult<i64> {
    diesel::sql_query("SELECT count(*) AS n FROM messages WHERE created_at >= $1")
        .bind::<Timestamptz, _>(since)
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

/// Poll until `expected` rows accepted since `since` are committed; returns
/// when that happened.
pub async fn wait_all(
    database_url: &str,
    expected: usize,
    since: DateTime<Utc>,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    wait_all_every(
        database_url,
        expected,
        since,
        timeout,
        Duration::from_millis(20),
    )
    .await
}

/// [`wait_all`], counting every `every`: a slower poll for a run whose
/// timing comes from the rows themselves, so that counting a large table
/// does not take the machine from the pipeline being measured.
pub async fn wait_all_every(
    database_url: &str,
    expected: usize,
    since: DateTime<Utc>,
    timeout: Duration,
    every: Duration,
) -> anyhow::Result<Instant> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        let deadline = Instant::now() + timeout;
        loop {
            let n = count_since(&mut conn, since)?;
            if n >= expected as i64 {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                anyhow::bail!("only {n} of {expected} rows after {timeout:?}");
            }
            std::thread::sleep(every);
        }
    })
    .await
    .context("row poller panicked")?
}

/// How the rows compare with the ids that got a 202.
pub struct Check {
    /// Rows whose id got a 202.
    pub found: i64,
    /// Ids that got a 202.
    pub expected: usize,
    /// Rows since the start that no 202 announced.
    pub extra: i64,
    /// Ids that got a 202 more than once (should be 0: ids are fresh).
    pub duplicates: usize,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict =
            if self.found == self.expected as i64 && self.extra == 0 && self.duplicates == 0 {
                "exact"
            } else {
                "MISMATCH"
            };
        write!(
            f,
            "{} of {} / {} / {} ({verdict})",
            self.found, self.expected, self.extra, self.duplicates
        )
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Compare stored rows with the accepted ids: the ids of the rows since
/// `since` are read and matched here. Not `WHERE id = ANY($1)` with the
/// accepted ids: over a table of many partitions (the retention soak's,
/// ninety of ten seconds) PostgreSQL plans that array once per partition,
/// and a million ids took a backend past 14 GB before it was cancelled.
pub async fn verify(
    database_url: &str,
    ids: Vec<Uuid>,
    since: DateTime<Utc>,
) -> anyhow::Result<Check> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        let duplicates = ids.len() - unique.len();
        let stored = diesel::sql_query("SELECT id FROM messages WHERE created_at >= $1")
            .bind::<Timestamptz, _>(since)
            .load::<Id>(&mut conn)?;
        // A row stored twice (the same id in two partitions) counts twice:
        // found then exceeds expected, a mismatch.
        let found = stored
            .iter()
            .filter(|row| unique.binary_search(&row.id).is_ok())
            .count();
        let found = i64::try_from(found)?;
        Ok(Check {
            found,
            expected: unique.len(),
            extra: i64::try_from(stored.len())? - found,
            duplicates,
        })
    })
    .await
    .context("verifier panicked")?
}

/// p50 and p99 of `stored_at - created_at` over the rows of `ids`.
pub async fn commit_latency(
    database_url: &str,
    ids: Vec<Uuid>,
) -> anyhow::Result<(Duration, Duration)> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        let q = diesel::sql_query(
            "SELECT \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM stored_at - created_at))::float8 AS p50, \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM stored_at - created_at))::float8 AS p99 \
             FROM messages WHERE id = ANY($1)",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
        .get_result::<Quantiles>(&mut conn)?;
        Ok((
            Duration::from_secs_f64(q.p50.max(0.0)),
            Duration::from_secs_f64(q.p99.max(0.0)),
        ))
    })
    .await
    .context("latency query panicked")?
}

/// How late scheduled messages were stored: `stored_at - deliver_at` of
/// each row of the ids (`scheduled_messages` holds what was asked), in
/// seconds.
#[derive(Debug, QueryableByName)]
pub struct Lateness {
    /// Rows stored for the ids (a duplicate counts twice).
    #[diesel(sql_type = BigInt)]
    pub stored: i64,
    /// Distinct ids among them.
    #[diesel(sql_type = BigInt)]
    pub distinct_ids: i64,
    /// Rows stored before their `deliver_at` (must be none).
    #[diesel(sql_type = BigInt)]
    pub early: i64,
    /// Scheduled rows of the ids not marked `delivered`.
    #[diesel(sql_type = BigInt)]
    pub unsettled: i64,
    #[diesel(sql_type = Double)]
    pub p50: f64,
    #[diesel(sql_type = Double)]
    pub p90: f64,
    #[diesel(sql_type = Double)]
    pub p99: f64,
    #[diesel(sql_type = Double)]
    pub p999: f64,
    #[diesel(sql_type = Double)]
    pub min: f64,
    #[diesel(sql_type = Double)]
    pub max: f64,
}

/// The lateness of the stored rows of `ids` (`stored_at` is the storing
/// transaction's time, set by the database, as `deliver_at` is read by it).
pub async fn lateness(database_url: &str, ids: Vec<Uuid>) -> anyhow::Result<Lateness> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        let q = diesel::sql_query(
            "WITH l AS (
               SELECT m.id, EXTRACT(EPOCH FROM m.stored_at - s.deliver_at)::float8 AS late
                 FROM messages m JOIN scheduled_messages s ON s.id = m.id
                WHERE m.id = ANY($1))
             SELECT count(*) AS stored,
                    count(DISTINCT id) AS distinct_ids,
                    count(*) FILTER (WHERE late < 0) AS early,
                    (SELECT count(*) FROM scheduled_messages
                      WHERE id = ANY($1) AND state <> 'delivered') AS unsettled,
                    coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY late), 0) AS p50,
                    coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY late), 0) AS p90,
                    coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY late), 0) AS p99,
                    coalesce(percentile_cont(0.999) WITHIN GROUP (ORDER BY late), 0) AS p999,
                    coalesce(min(late), 0) AS min,
                    coalesce(max(late), 0) AS max
               FROM l",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
        .get_result::<Lateness>(&mut conn)?;
        Ok(q)
    })
    .await
    .context("lateness query panicked")?
}
