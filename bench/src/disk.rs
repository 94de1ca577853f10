//! The database's size on disk over a run (every table, index and TOAST
//! of it: `pg_database_size`), and whether it stayed flat: what the
//! retention soak measures.

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

#[derive(QueryableByName)]
struct Size {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

/// The size of the database at `database_url`, in bytes.
pub async fn database_bytes(database_url: &str) -> anyhow::Result<u64> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url)?;
        let size = diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
            .get_result::<Size>(&mut conn)?;
        Ok(u64::try_from(size.bytes).unwrap_or(0))
    })
    .await
    .context("size sampler panicked")?
}

/// How the size moved over the second half of a run.
#[derive(Debug, Clone, Copy)]
pub struct Flatness {
    /// At the middle of the run.
    pub middle: u64,
    /// The least and the most over the second half.
    pub min: u64,
    /// See `min`.
    pub max: u64,
    /// At the end.
    pub end: u64,
}

impl Flatness {
    /// Of `samples` (time since the start, bytes) over a run of `run`.
    pub fn of(samples: &[(Duration, u64)], run: Duration) -> Option<Self> {
        let half = run / 2;
        let second: Vec<u64> = samples
            .iter()
            .filter(|(t, _)| *t >= half)
            .map(|(_, b)| *b)
            .collect();
        Some(Self {
            middle: *second.first()?,
            min: *second.iter().min()?,
            max: *second.iter().max()?,
            end: *second.last()?,
        })
    }

    /// (max - min) / min over the second half.
    pub fn spread(&self) -> f64 {
        (self.max.saturating_sub(self.min)) as f64 / self.min.max(1) as f64
    }
}

/// Sample [`database_bytes`] every `every` until `done` turns true.
pub async fn sample(
    database_url: String,
    every: Duration,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Vec<(Duration, u64)> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Ok(bytes) = database_bytes(&database_url).await {
                    samples.push((started.elapsed(), bytes));
                }
            }
            _ = done.changed() => break,
        }
    }
    samples
}
