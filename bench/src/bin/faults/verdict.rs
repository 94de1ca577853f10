//! The verdict: what the run left behind (rows, dead letters, the store
//! queue) against what the client was told, as two tables.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bench::report::{self, Check};
use uuid::Uuid;

use crate::args::Args;
use crate::load::{Accepted, Tally};
use crate::settle::Notifications;
use crate::target::{Scheduled, Setup};

/// What the run left behind.
pub struct Observed {
    /// The run's rows: `(id, content)`.
    rows: Vec<(Uuid, String)>,
    /// The message ids of everything in the dead-letter queue (taken).
    dead_ids: Vec<String>,
    /// Messages still in the store queue.
    store_depth: u32,
    /// Local only: the scheduled messages left undelivered or stored early.
    scheduled: Option<Scheduled>,
}

/// Read the rows, take the dead letters, and count the store queue.
pub async fn observe(
    setup: &Setup,
    client: &reqwest::Client,
    content_prefix: &str,
    channel: &lapin::Channel,
) -> anyhow::Result<Observed> {
    let rows = setup
        .target
        .stored(client, &setup.base, content_prefix)
        .await?;
    let dead = e2e::broker::take_all(channel, &setup.topology.dead_queue).await?;
    let dead_ids = dead
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .collect();
    let store_depth = e2e::broker::depth(channel, &setup.topology.store_queue).await?;
    let scheduled = setup.target.scheduled().await?;
    Ok(Observed {
        rows,
        dead_ids,
        store_depth,
        scheduled,
    })
}

/// Everything the verdict weighs.
pub struct Run<'a> {
    pub args: &'a Args,
    pub tally: &'a Tally,
    pub accepted: &'a Accepted,
    pub poison_ids: &'a [String],
    /// Whether the queues drained and every row arrived in time.
    pub drained: bool,
    /// Local only: what the webhook receiver got.
    pub notifications: Option<Notifications>,
    /// Local only: how many consumers exited 0 after SIGTERM.
    pub graceful: Option<usize>,
    /// What each fault is called (see `Target::fault_names`).
    pub fault_names: [&'static str; 4],
    pub wall_time: Duration,
}

/// Print the measures and the checks; whether every check passed.
pub fn judge(run: &Run<'_>, observed: Observed) -> bool {
    let Run {
        args,
        tally,
        accepted,
        poison_ids,
        ..
    } = *run;
    let total = observed.rows.len();
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    for (id, _) in &observed.rows {
        *copies.entry(*id).or_default() += 1;
    }
    let stored: HashMap<Uuid, String> = observed.rows.into_iter().collect();
    let distinct = stored.len();
    let lost = accepted
        .contents
        .keys()
        .filter(|id| !stored.contains_key(id))
        .count();
    let unannounced = stored
        .keys()
        .filter(|id| !accepted.contents.contains_key(id))
        .count();
    let wrong_payload = accepted
        .contents
        .iter()
        .filter(|(id, content)| stored.get(id).is_some_and(|s| s != *content))
        .count();
    // The messages sent with delay_seconds, on their own.
    let scheduled_stored = accepted
        .scheduled
        .iter()
        .filter(|id| stored.contains_key(id))
        .count();
    let scheduled_lost = accepted.scheduled.len() - scheduled_stored;
    let scheduled_duplicated = accepted
        .scheduled
        .iter()
        .filter(|id| copies.get(id).is_some_and(|n| *n > 1))
        .count();
    let dead_set: HashSet<&String> = observed.dead_ids.iter().collect();
    let poison_set: HashSet<&String> = poison_ids.iter().collect();

    let t = Tally::get;
    let counts = [
        t(&tally.consumer_kills),
        t(&tally.rabbit_app_restarts),
        t(&tally.rabbit_hard_kills),
        t(&tally.pg_restarts),
    ];
    let mut checks = vec![
        Check::new(
            "every 202 id has exactly one row (lost)",
            lost == 0 && total == distinct,
            format!("{lost} lost, {} duplicate rows", total - distinct),
        ),
        Check::new(
            "every scheduled 202 id (delay_seconds) has exactly one row",
            scheduled_lost == 0
                && scheduled_duplicated == 0
                && (args.scheduled_every == 0 || !accepted.scheduled.is_empty()),
            format!(
                "{scheduled_stored} of {} stored, {scheduled_lost} lost, {scheduled_duplicated} duplicated",
                accepted.scheduled.len()
            ),
        ),
        Check::new(
            "every message sent with delay_seconds was held (202 scheduled)",
            t(&tally.not_held) == 0,
            format!("{} answered otherwise", t(&tally.not_held)),
        ),
        Check::new(
            "no row without a 202",
            unannounced == 0,
            unannounced.to_string(),
        ),
        Check::new(
            "payloads match what was sent",
            wrong_payload == 0,
            format!("{wrong_payload} differ"),
        ),
        Check::new(
            "messages.dead holds exactly the poison",
            dead_set == poison_set && observed.dead_ids.len() == poison_ids.len(),
            format!(
                "{} dead letters ({} distinct) for {} poison",
                observed.dead_ids.len(),
                dead_set.len(),
                poison_set.len()
            ),
        ),
        Check::new(
            "messages.store drained",
            observed.store_depth == 0 && run.drained,
            format!("{} left", observed.store_depth),
        ),
        Check::new(
            "malformed requests got 4xx, never 202",
            t(&tally.unexpected) == 0,
            format!("{} unexpected answers", t(&tally.unexpected)),
        ),
    ];
    if let Some(s) = &observed.scheduled {
        checks.push(Check::new(
            "no scheduled message stored before its deliver_at, none left undelivered",
            s.early == 0 && s.pending == 0,
            format!("{} early, {} undelivered", s.early, s.pending),
        ));
    }
    if let Some(n) = &run.notifications {
        checks.push(Check::new(
            "every message sent with a callback was notified, signed",
            n.unnotified == 0 && n.bad_signatures == 0,
            format!(
                "{} of {} never notified, {} bad signatures",
                n.unnotified,
                accepted.with_callback.len(),
                n.bad_signatures
            ),
        ));
    }
    if let Some(graceful) = run.graceful {
        checks.push(Check::new(
            "consumers stopped gracefully (SIGTERM, exit 0)",
            graceful == args.consumers,
            format!("{graceful} of {}", args.consumers),
        ));
    }
    if args.inject_faults {
        checks.push(Check::new(
            "every fault was injected",
            counts[0] > 0 && counts[1] == 1 && counts[2] == 1 && counts[3] == 1,
            format!("{} faults", counts.iter().sum::<usize>()),
        ));
        checks.push(Check::new(
            "every fault began while messages were being sent",
            t(&tally.faults_after_load) == 0,
            format!("{} began after the last 202", t(&tally.faults_after_load)),
        ));
    }

    let mut measures = vec![
        ["messages sent".to_owned(), args.n.to_string()],
        ["HTTP attempts".to_owned(), t(&tally.sent).to_string()],
        [
            "202 (distinct ids)".to_owned(),
            format!("{} ({})", t(&tally.accepted), accepted.contents.len()),
        ],
        [
            "retried (503 / connection errors)".to_owned(),
            t(&tally.retried).to_string(),
        ],
        [
            "malformed requests → 4xx".to_owned(),
            t(&tally.client_errors).to_string(),
        ],
        ["rows".to_owned(), total.to_string()],
        ["duplicates".to_owned(), (total - distinct).to_string()],
        ["lost".to_owned(), lost.to_string()],
        [
            format!(
                "scheduled (every {}th, delay_seconds {}): accepted / stored / lost / duplicated",
                args.scheduled_every, args.delay_secs
            ),
            format!(
                "{} / {scheduled_stored} / {scheduled_lost} / {scheduled_duplicated}",
                accepted.scheduled.len()
            ),
        ],
        [
            "dead-lettered (poison sent)".to_owned(),
            format!("{} ({})", observed.dead_ids.len(), poison_ids.len()),
        ],
    ];
    if let Some(n) = &run.notifications {
        measures.push([
            "notifications owed (requests received, distinct webhook-ids)".to_owned(),
            format!(
                "{} ({}, {})",
                accepted.with_callback.len(),
                n.received,
                n.distinct
            ),
        ]);
    }
    if args.inject_faults {
        for (i, (name, count)) in run.fault_names.iter().zip(counts).enumerate() {
            let name = if i == 3 {
                format!("{name} ({:?} down)", args.pg_down)
            } else {
                (*name).to_owned()
            };
            measures.push([name, count.to_string()]);
        }
    }
    measures.push(["wall time".to_owned(), format!("{:.0?}", run.wall_time)]);
    report::table(&["Measure", "Value"], measures);
    !report::checks(&checks)
}
