//! `kinds`: the benchmarks of kinds of work (issue 17), on the local broker
//! and database, with the consumer in this process (as the e2e tests start
//! it: its own database and topology, removed at the end).
//!
//! * **Isolation**: a backlog of `--backlog` `email` messages is queued,
//!   a consumer (every kind, default settings) starts draining it, and
//!   `--probes` messages are published one by one, `--probe-gap-ms` (2)
//!   apart: as
//!   `profile` (a queue of their own), then in a second run as `email`
//!   (behind the backlog, as if there were one kind). Prints the p50/p99
//!   accept→commit latency of the probes (`stored_at - created_at`).
//! * **Shards**: `--n` messages of `email` with `KIND_SHARDS=email:1|2|4`:
//!   broker only (publish with confirms → consume and ack, a channel per
//!   shard) and end to end (publish with confirms → stored by one consumer
//!   of the kind).
//!
//! `kinds [--backlog 100000] [--probes 200] [--probe-gap-ms 2] [--n 50000]
//! [--only isolation|shards]`
//! (`TEST_DATABASE_URL`, `TEST_AMQP_URL` as for the e2e tests). Release
//! build: `cargo run --release -p bench --bin kinds`.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use bench::flags::Flags;
use bench::report::{self, ms};
use bench::{rows, stages};
use e2e::{spawn_consumer, TestBroker, TestDb};
use lapin::options::ConfirmSelectOptions;
use shared::kind::Kind;
use shared::Envelope;

/// Confirms outstanding while publishing a backlog.
const WINDOW: usize = 2000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse()?;
    let backlog: usize = flags.number("backlog", 100_000)?;
    let probes: usize = flags.number("probes", 200)?;
    let n: usize = flags.number("n", 50_000)?;
    let gap = Duration::from_millis(flags.number("probe-gap-ms", 2)?);
    let only = flags.string("only", "");
    let amqp_url = e2e::broker::amqp_url();

    if only.is_empty() || only == "isolation" {
        let mut table = Vec::new();
        for (label, probe_kind) in [
            ("`profile`, its own queue", "profile"),
            ("the same messages as `email`, one queue", "email"),
        ] {
            eprintln!("isolation: {backlog} email queued, {probes} probes as {probe_kind}…");
            let run = isolation(backlog, probes, probe_kind, gap).await?;
            table.push(vec![
                label.to_owned(),
                ms(run.p50),
                ms(run.p99),
                format!("{}", run.left_at_last_probe),
                format!("{:.1} s", run.drain.as_secs_f64()),
            ]);
        }
        println!(
            "\nIsolation: {probes} probes ({} ms apart) during a backlog of {backlog} `email` messages\n",
            gap.as_millis()
        );
        report::table(
            &[
                "probes",
                "p50 accept→commit",
                "p99 accept→commit",
                "backlog still queued when the last probe was published",
                "backlog drained in",
            ],
            table,
        );
    }

    if only.is_empty() || only == "shards" {
        let mut table = Vec::new();
        for shards in [1u16, 2, 4] {
            eprintln!("shards: {n} email messages over {shards} shard(s)…");
            let broker = stages::broker_kind(&amqp_url, n, WINDOW, "email", shards).await?;
            let end_to_end = end_to_end(n, shards).await?;
            table.push(vec![
                format!("{shards}"),
                format!("{broker:.0} msg/s"),
                format!("{end_to_end:.0} msg/s"),
            ]);
        }
        println!("\nShards: {n} messages of one kind\n");
        report::table(
            &[
                "shards",
                "broker only (publish+confirm → consume+ack)",
                "end to end (publish+confirm → stored)",
            ],
            table,
        );
    }
    Ok(())
}

/// What one isolation run measured.
struct Isolation {
    /// The probes' accept→commit latency.
    p50: Duration,
    p99: Duration,
    /// Backlog messages not yet stored when the last probe was published
    /// (above zero: every probe met the backlog).
    left_at_last_probe: i64,
    /// From the consumer's start to the last backlog message stored.
    drain: Duration,
}

/// One isolation run.
async fn isolation(
    backlog: usize,
    probes: usize,
    probe_kind: &str,
    gap: Duration,
) -> anyhow::Result<Isolation> {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let channel = broker.channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let email = Kind::parse("email").ok_or_else(|| anyhow::anyhow!("kind"))?;
    let probe = Kind::parse(probe_kind).ok_or_else(|| anyhow::anyhow!("kind"))?;
    let queued = (0..backlog).map(|i| Envelope {
        kind: email.clone(),
        ..Envelope::new(format!("backlog {i}"))
    });
    stages::publish_all(&channel, &broker.topology, queued, WINDOW).await?;

    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(probes);
    for i in 0..probes {
        let envelope = Envelope {
            kind: probe.clone(),
            ..Envelope::new(format!("probe {i}"))
        };
        ids.push(envelope.id);
        stages::publish_all(&channel, &broker.topology, std::iter::once(envelope), 1).await?;
        tokio::time::sleep(gap).await;
    }
    let backlog_stored = "SELECT count(*) AS n FROM messages WHERE content LIKE 'backlog %'";
    let left_at_last_probe = backlog as i64 - db.scalar(backlog_stored);
    let deadline = Instant::now() + Duration::from_secs(600);
    while db.scalar("SELECT count(*) AS n FROM messages") < (backlog + probes) as i64 {
        anyhow::ensure!(Instant::now() < deadline, "not stored in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed();
    let (p50, p99) = rows::commit_latency(&db.url, ids).await?;
    consumer.stop().await;
    Ok(Isolation {
        p50,
        p99,
        left_at_last_probe,
        drain,
    })
}

/// `n` messages of `email` over `shards` shards: confirmed publish → stored
/// by one consumer of the kind; messages per second.
async fn end_to_end(n: usize, shards: u16) -> anyhow::Result<f64> {
    let db = TestDb::new();
    let broker = TestBroker::with_sharded_kinds("email", &format!("email:{shards}")).await;
    let consumer = spawn_consumer(&db, &broker, &[("CONSUME_KINDS", "email")]).await;
    let channel = broker.channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let email = Kind::parse("email").ok_or_else(|| anyhow::anyhow!("kind"))?;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let start = Instant::now();
    let envelopes = (0..n).map(|i| Envelope {
        kind: email.clone(),
        ..Envelope::new(format!("shard run {i}"))
    });
    stages::publish_all(&channel, &broker.topology, envelopes, WINDOW).await?;
    let done = rows::wait_all(&db.url, n, since, Duration::from_secs(600)).await?;
    let rate = n as f64 / (done - start).as_secs_f64();
    consumer.stop().await;
    Ok(rate)
}
