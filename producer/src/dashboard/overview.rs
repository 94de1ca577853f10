//! `GET /dashboard/api/overview`: the dashboard's live numbers in one small
//! JSON document, polled every couple of seconds.
//!
//! What each number is, and where it comes from:
//! * `accepted`: messages this producer answered 202 (its own in-memory
//!   counter, [`crate::rates::RateWindow`]; other replicas count theirs).
//! * `stored`: rows committed by any consumer (`messages.stored_at`).
//! * `dead_lettered`: dead letters recorded in the database
//!   (`dead_letters.dead_lettered_at`; poison without a UUID id has no row
//!   and is counted only in `queue.dead`).
//! * `queue`: RabbitMQ's own answer to a passive declare: messages ready
//!   (not yet delivered to a consumer), consumers subscribed, and the
//!   dead-letter queue's length. RabbitMQ does not report unacknowledged
//!   (in flight) deliveries through AMQP: `in_flight` comes from its
//!   management API when `RABBITMQ_MANAGEMENT_URL` is set, else it is null
//!   (the page says "n/a" rather than guess).
//! * `kinds`: per configured kind (`KINDS` order), the same figures for
//!   that kind alone: its queue's (over every shard) ready messages and
//!   consumers, from the same passive declares; its accepted counts from
//!   this producer's per-kind window (`crate::metrics`); its stored and
//!   dead-lettered counts from the same database query, grouped by kind.
//!
//! The database part is cached per worker: seconds older than
//! `SETTLED_SECS` do not change any more, so each poll only counts the
//! newest rows (a BRIN index on `stored_at` finds them), and polls within
//! `REUSE_FOR` of each other share one query. Measured on this machine
//! with 3 million rows, 2.4 million of them in the last five minutes: the
//! first poll's query takes ~0.9 s, each later one ~10 ms per 30 000 recent
//! rows (~250 ms without the index).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};

use super::scheduled;
use crate::management::InFlight;
use crate::state::AppState;

/// The chart's span and resolution: the last five minutes in 5 s steps.
pub const WINDOW_SECS: i64 = 300;
/// Seconds per chart point.
pub const STEP_SECS: i64 = 5;
/// The headline rates average the last this many complete seconds.
const RATE_SECS: i64 = 10;
/// A second this old is complete: every transaction that stamped a row
/// with it (`stored_at` is the transaction's start) has committed.
const SETTLED_SECS: i64 = 30;
/// Polls within this long of the last query share its answer, so the
/// database work stays bounded however many pages are open.
const REUSE_FOR: Duration = Duration::from_secs(1);
/// Longest wait for the broker's answer about queue depths.
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-second counts already read from the database, per worker.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// Every second before this one is settled and in `seconds`.
    settled_until: i64,
    /// unix second → its counts.
    seconds: BTreeMap<i64, Second>,
    /// The unsettled seconds of the last query, and when it ran.
    recent: BTreeMap<i64, Second>,
    fetched: Option<Instant>,
}

impl CacheInner {
    /// Settled and recent counts from `start` on.
    fn counts_from(&self, start: i64) -> BTreeMap<i64, Second> {
        let mut all: BTreeMap<i64, Second> = self
            .seconds
            .range(start..)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        all.extend(self.recent.iter().map(|(k, v)| (*k, v.clone())));
        all
    }
}

/// One second's rows: stored and dead-lettered, in all and per configured
/// kind (`KINDS` order; a kind no longer configured counts in all only).
#[derive(Debug, Clone, Default, PartialEq)]
struct Second {
    stored: u64,
    dead: u64,
    by_kind: Vec<(u64, u64)>,
}

impl Second {
    fn of_kind(&self, i: usize) -> (u64, u64) {
        self.by_kind.get(i).copied().unwrap_or_default()
    }
}

#[derive(QueryableByName)]
struct SecondCount {
    #[diesel(sql_type = Text)]
    category: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    second: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Rows stored and dead-lettered per second and kind since `since`.
fn counts_since(conn: &mut PgConnection, since: DateTime<Utc>) -> QueryResult<Vec<SecondCount>> {
    diesel::sql_query(
        "SELECT 'stored' AS category, kind, \
                floor(extract(epoch FROM stored_at))::int8 AS second, count(*)::int8 AS n \
           FROM messages WHERE stored_at >= $1 GROUP BY 2, 3 \
         UNION ALL \
         SELECT 'dead', kind, floor(extract(epoch FROM dead_lettered_at))::int8, count(*)::int8 \
           FROM dead_letters WHERE dead_lettered_at >= $1 GROUP BY 2, 3",
    )
    .bind::<Timestamptz, _>(since)
    .load(conn)
}

/// The broker's answer: the store queue's and dead-letter queue's figures
/// (the overview's `queue`), and per configured kind its queues' (in
/// `KINDS` order).
struct QueueFigures {
    queue: Value,
    kinds: Vec<Value>,
}

/// The queue figures, or `None` when the broker cannot say.
async fn queue_figures(state: &AppState) -> Option<QueueFigures> {
    let topology = state.publisher.topology();
    let passive = QueueDeclareOptions {
        passive: true, // only ask; never create or change the queue
        ..QueueDeclareOptions::default()
    };
    let ask = async |channel: &lapin::Channel| {
        let declare = async |name: &str| {
            channel
                .queue_declare(name.into(), passive, FieldTable::default())
                .await
        };
        let store = declare(&topology.store_queue).await?;
        let dead = declare(&topology.dead_queue).await?;
        // Each kind over all its queues (a sharded kind has several); the
        // default kind's is the store queue, asked again for simplicity.
        let mut kinds = Vec::with_capacity(topology.kinds.all().len());
        for kind in topology.kinds.all() {
            let queues = topology.shard_queues_of(kind);
            let (mut ready, mut consumers) = (0u64, 0u64);
            for queue in &queues {
                let q = declare(queue).await?;
                ready += u64::from(q.message_count());
                consumers += u64::from(q.consumer_count());
            }
            kinds.push(json!({
                "queues": queues.len(),
                "ready": ready,
                "consumers": consumers,
            }));
        }
        Ok::<_, lapin::Error>((store, dead, kinds))
    };
    let answer = state
        .publisher
        .with_channel("asked", async |channel| {
            tokio::time::timeout(BROKER_TIMEOUT, ask(channel)).await
        })
        .await
        .ok()?;
    match answer {
        Ok(Ok((store, dead, kinds))) => Some(QueueFigures {
            queue: json!({
                "ready": store.message_count(),
                "consumers": store.consumer_count(),
                "dead": dead.message_count(),
            }),
            kinds,
        }),
        Ok(Err(e)) => {
            log::warn!("overview: cannot read queue depths: {e}");
            None
        }
        Err(_) => {
            log::warn!("overview: queue depths not answered within {BROKER_TIMEOUT:?}");
            None
        }
    }
}

/// Sum per-second counts into chart points of [`STEP_SECS`].
fn buckets(per_second: &[u64]) -> Vec<u64> {
    per_second
        .chunks(STEP_SECS as usize)
        .map(|c| c.iter().sum())
        .collect()
}

fn rate(per_second: &[u64]) -> f64 {
    let tail = &per_second[per_second.len().saturating_sub(RATE_SECS as usize)..];
    tail.iter().sum::<u64>() as f64 / RATE_SECS as f64
}

/// `GET /dashboard/api/overview`.
#[utoipa::path(get, path = "/dashboard/api/overview", tag = "dashboard",
    responses(
        (status = 200, description = r#"{"now", "step_secs", "window_secs", "rates": {"accepted", "stored", "dead_lettered"} (per second, last 10 s), "totals": {…} (last 5 min), "series": {"start", "accepted": [...], "stored": [...], "dead_lettered": [...]} (per step), "queue": {"ready", "consumers", "dead", "in_flight" (null without RABBITMQ_MANAGEMENT_URL)} or null, "kinds": [{"kind", "queue": {"queues", "ready", "consumers"} (over the kind's shards) or null, "rates": {"accepted", "stored", "dead_lettered"}, "totals": {…}}] (each configured kind, in KINDS order), "broker": "up|down", "database": "up|down", "tables": [{"table", "rows", "bytes"}] or null, "retention": {"interval", "batch", "idempotency_key_ttl", "dead_letters", "batches", "webhooks", "messages", "message_partition"}, "scheduled": {"waiting" (messages waiting for their deliver_at), "next_due" (the earliest deliver_at, or null), "next": [{"id", "deliver_at", "kind"}] (the 20 soonest)} or null (database down)}. Always 200: a service that is down is reported, not an error."#),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
    ))]
pub async fn overview(
    state: web::Data<AppState>,
    cache: web::Data<Cache>,
    in_flight: Option<web::Data<InFlight>>,
    scheduled_cache: web::Data<scheduled::Cache>,
) -> HttpResponse {
    let now = Utc::now();
    let now_sec = now.timestamp();
    // The chart ends with the last complete step; the headline rates use
    // complete seconds only, so a half-counted second never shows as a dip.
    let end = now_sec - now_sec.rem_euclid(STEP_SECS);
    let start = end - WINDOW_SECS;
    let rate_end = now_sec;

    let (database_up, db_seconds) = database_counts(&state, &cache, start, now_sec).await;
    let accepted = state.metrics.accepted_recent.counts(start, rate_end);
    let (mut stored, mut dead) = (Vec::new(), Vec::new());
    for second in start..rate_end {
        let counts = db_seconds.get(&second);
        stored.push(counts.map_or(0, |c| c.stored));
        dead.push(counts.map_or(0, |c| c.dead));
    }
    let chart_len = (end - start) as usize;
    let series = |v: &[u64]| buckets(&v[..chart_len]);
    // Totals run to now, like the rates (the chart stops at its last full step).
    let total = |v: &[u64]| v.iter().sum::<u64>();

    let broker_up = state.publisher.is_connected();
    let in_flight = async {
        match &in_flight {
            Some(source) => source.count().await,
            None => None,
        }
    };
    // Both asked at once: each waits at most 2 s.
    let (figures, in_flight) = if broker_up {
        tokio::join!(queue_figures(&state), in_flight)
    } else {
        (None, in_flight.await)
    };
    let (mut queue, kind_queues) = match figures {
        Some(f) => (Some(f.queue), f.kinds),
        None => (None, Vec::new()),
    };
    if let Some(Value::Object(figures)) = queue.as_mut() {
        figures.insert("in_flight".into(), json!(in_flight));
    }
    // The metrics' kinds, the topology's and the database counts' are one
    // list (`KINDS`), in one order: an index names the same kind in each.
    let per_kind: Vec<Value> = state
        .metrics
        .accepted_recent_by_kind()
        .enumerate()
        .map(|(i, (kind, window))| {
            let accepted = window.counts(start, rate_end);
            let (mut stored, mut dead) = (Vec::new(), Vec::new());
            for second in start..rate_end {
                let (s, d) = db_seconds
                    .get(&second)
                    .map(|c| c.of_kind(i))
                    .unwrap_or_default();
                stored.push(s);
                dead.push(d);
            }
            let db = |v: Value| if database_up { v } else { Value::Null };
            json!({
                "kind": kind,
                "queue": kind_queues.get(i),
                "rates": {
                    "accepted": rate(&accepted),
                    "stored": db(json!(rate(&stored))),
                    "dead_lettered": db(json!(rate(&dead))),
                },
                "totals": {
                    "accepted": total(&accepted),
                    "stored": db(json!(total(&stored))),
                    "dead_lettered": db(json!(total(&dead))),
                },
            })
        })
        .collect();
    // Catalog and statistics only: cheap enough for every poll.
    let tables = if database_up {
        state
            .with_db(|conn| Ok(shared::db::table_stats::sizes(conn)?))
            .await
            .ok()
    } else {
        None
    };
    let scheduled = if database_up {
        scheduled::overview_figures(&state, &scheduled_cache, REUSE_FOR).await
    } else {
        Value::Null
    };
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "now": now,
            "step_secs": STEP_SECS,
            "window_secs": WINDOW_SECS,
            "rates": {
                "accepted": rate(&accepted),
                "stored": if database_up { json!(rate(&stored)) } else { Value::Null },
                "dead_lettered": if database_up { json!(rate(&dead)) } else { Value::Null },
            },
            "totals": {
                "accepted": total(&accepted),
                "stored": if database_up { json!(total(&stored)) } else { Value::Null },
                "dead_lettered": if database_up { json!(total(&dead)) } else { Value::Null },
            },
            "series": {
                "start": DateTime::<Utc>::from_timestamp(start, 0),
                "accepted": series(&accepted),
                "stored": series(&stored),
                "dead_lettered": series(&dead),
            },
            "queue": queue,
            "kinds": per_kind,
            "broker": if broker_up { "up" } else { "down" },
            "database": if database_up { "up" } else { "down" },
            "tables": tables,
            "retention": state.retention.describe(),
            "scheduled": scheduled,
        }))
}

/// Stored and dead-lettered counts per second from `start` to `now_sec`,
/// and whether the database answered. Settled seconds come from the cache.
async fn database_counts(
    state: &AppState,
    cache: &Cache,
    start: i64,
    now_sec: i64,
) -> (bool, BTreeMap<i64, Second>) {
    let from = {
        let inner = cache.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.fetched.is_some_and(|at| at.elapsed() < REUSE_FOR) {
            return (true, inner.counts_from(start));
        }
        inner.settled_until.max(start)
    };
    let Some(since) = DateTime::<Utc>::from_timestamp(from, 0) else {
        return (false, BTreeMap::new());
    };
    let fresh = state
        .with_db(move |conn| Ok(counts_since(conn, since)?))
        .await;
    let mut inner = cache.inner.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(rows) = fresh else {
        return (false, inner.seconds.clone());
    };
    let kinds = state.publisher.topology().kinds.all();
    let mut recent: BTreeMap<i64, Second> = BTreeMap::new();
    for row in rows {
        let entry = recent.entry(row.second).or_insert_with(|| Second {
            by_kind: vec![(0, 0); kinds.len()],
            ..Second::default()
        });
        let n = u64::try_from(row.n).unwrap_or(0);
        let of_kind = kinds
            .iter()
            .position(|k| k.as_str() == row.kind)
            .and_then(|i| entry.by_kind.get_mut(i));
        if row.category == "stored" {
            entry.stored += n;
            if let Some(counts) = of_kind {
                counts.0 += n;
            }
        } else {
            entry.dead += n;
            if let Some(counts) = of_kind {
                counts.1 += n;
            }
        }
    }
    // Keep what has settled (another request may have done the same: the
    // counts are exact, so writing them twice is harmless).
    let settled = now_sec - SETTLED_SECS;
    for second in from..settled {
        let counts = recent.get(&second).cloned().unwrap_or_default();
        inner.seconds.insert(second, counts);
    }
    inner.settled_until = inner.settled_until.max(settled);
    // Bounded: nothing older than the window is kept.
    inner.seconds = inner.seconds.split_off(&start);
    inner.recent = recent.split_off(&settled);
    inner.fetched = Some(Instant::now());
    (true, inner.counts_from(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_rates() {
        let per_second: Vec<u64> = (0..20).collect();
        assert_eq!(buckets(&per_second), vec![10, 35, 60, 85]);
        // The last 10 seconds: 10..=19, 145 in all.
        assert!((rate(&per_second) - 14.5).abs() < 1e-9);
    }
}
