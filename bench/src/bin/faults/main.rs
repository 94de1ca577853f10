//! `faults`: the fault-injection test. It drives the real producer and
//! consumer binaries against the local RabbitMQ and PostgreSQL while
//! breaking things, then proves the promise: every message that got a 202 is
//! stored exactly once with the payload that was sent, and only the poison
//! ends in `messages.dead`.
//!
//! While N messages are sent over HTTP (a client that retries 503s and
//! connection errors with the same Idempotency-Key), plus a stream of
//! malformed requests and a few poison messages published straight to the
//! exchange, it:
//! * SIGKILLs a random consumer every few seconds and restarts it;
//! * stops and starts the RabbitMQ app (`rabbitmqctl stop_app/start_app`);
//! * kills the RabbitMQ VM hard (SIGKILL) and starts it again;
//! * stops PostgreSQL (`pg_ctlcluster … stop -m fast`) for a while;
//! * at the end stops every consumer with SIGTERM.
//!
//! Every `--callback-every`-th message carries a `callback_url` to a
//! receiver this tool runs on 127.0.0.1, which is itself down for a few
//! seconds mid-run: each of those messages must get its signed
//! `message.stored` notification (at least once), whatever was killed.
//!
//! Every `--scheduled-every`-th message (10; 0 for none) is sent with
//! `delay_seconds` `--delay-secs` (3): held in the database and published
//! by a producer's dispatcher when it falls due, inside the run, faults
//! included (issue 19). Each must be answered `scheduled`, and stored
//! exactly once; locally, none before its `deliver_at`. The settle waits
//! until the last of them has fallen due and is stored.
//!
//! It restarts the machine's shared services: run it alone (see
//! `scripts/faults.sh`), never next to other tests.
//!
//! With `--compose-project P` it tests a running `docker compose` project
//! instead (see `scripts/compose-test.sh`): the same client and checks, sent
//! to the producer's published port (`--producer-url`), with the faults done
//! to containers: `docker kill -s KILL` on a consumer replica (then `docker
//! start`), `docker compose restart rabbitmq`, `docker compose kill -s KILL
//! rabbitmq` then `start`, `docker compose stop postgres` for a while then
//! `start`. The rows are read through `GET /messages` (PostgreSQL is not
//! published), keeping only this run's. The graceful stop of the consumers
//! is left to the script (`docker compose stop`). `--faults none` sends and
//! checks without breaking anything. No callbacks there: the containers
//! cannot reach a receiver on the host's 127.0.0.1.
//!
//! # Layout
//!
//! `main` is the scenario, step by step; each step lives in one module:
//! `target` (the system under test: set up, faults done to it, its rows,
//! tear-down), `load` (what is sent, and the counters), `schedule` (when
//! the faults happen), `settle` (waiting for the system to finish what it
//! owes), `verdict` (what was left behind against what was promised, as
//! tables). `args` holds the settings they read. The modules import each
//! other only downwards: `schedule` uses `target` and `load`, `settle` uses
//! `target`, `verdict` uses `load`, `settle` and `target`.

#![allow(clippy::print_stdout)]

mod args;
mod load;
mod schedule;
mod settle;
mod target;
mod verdict;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::{Connection as Amqp, ConnectionProperties};
use uuid::Uuid;

use args::parse_args;
use load::Tally;
use target::Target;

/// The scenario: set up, send under faults, let everything settle, judge.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let run = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let logs = std::env::temp_dir().join(format!("faults-{run}"));
    std::fs::create_dir_all(&logs)?;
    eprintln!("run {run}: logs in {}", logs.display());
    // What this run's messages say, so that its rows can be told apart.
    let content_prefix = format!("faults {run} message ");

    let setup = target::set_up(&args, &run, &logs).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_ready(&client, &setup.base).await?;

    let tally = Arc::new(Tally::default());
    let sending = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    // Poison, straight to the exchange, before any fault.
    let poison_ids = load::publish_poison(&args.amqp_url, &setup.topology, args.poison).await?;
    // The faults, on their own schedule.
    let injector = args.inject_faults.then(|| {
        tokio::spawn(schedule::inject(
            setup.target.clone(),
            tally.clone(),
            sending.clone(),
            args.clone(),
        ))
    });
    // Malformed requests, all the way through.
    let malformed = tokio::spawn(load::malformed_stream(
        client.clone(),
        setup.base.clone(),
        tally.clone(),
        sending.clone(),
    ));
    // Local: the webhook receiver goes down for a while too.
    let receiver = match setup.target.as_ref() {
        Target::Local { receiver, .. } => Some(receiver.clone()),
        Target::Compose(_) => None,
    };
    let outage = receiver
        .clone()
        .map(|r| tokio::spawn(schedule::receiver_outage(r, args.duration)));
    // The real load: N messages paced over the run, retried until accepted.
    let plan = load::Plan {
        n: args.n,
        duration: args.duration,
        callback_every: args.callback_every,
        hook_url: receiver.as_ref().map(|r| r.url("/faults")),
        scheduled_every: args.scheduled_every,
        delay_secs: args.delay_secs,
        run: run.clone(),
        content_prefix: content_prefix.clone(),
    };
    let accepted = load::send_all(plan, &client, &setup.base, &tally, start).await?;
    eprintln!("sent {} messages in {:?}", args.n, start.elapsed());
    sending.store(false, Ordering::SeqCst);
    if let Some(injector) = injector {
        injector.await??;
    }
    malformed.await?;

    // Let the consumers finish, then (local) stop them gracefully.
    eprintln!("waiting for the queue to drain…");
    let amqp = Amqp::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = amqp.create_channel().await?;
    let drained = settle::wait_drained(
        &setup.target,
        &client,
        &setup.base,
        &content_prefix,
        accepted.contents.len(),
        &channel,
        &setup.topology,
    )
    .await;
    if let Some(outage) = outage {
        outage.await?;
    }
    let (notifications, graceful) = match setup.target.as_ref() {
        Target::Local {
            receiver,
            secret,
            system,
            ..
        } => (
            Some(settle::wait_notified(receiver, secret, &accepted.with_callback).await),
            Some(target::stop_local(system).await?),
        ),
        Target::Compose(_) => (None, None),
    };

    let observed = verdict::observe(&setup, &client, &content_prefix, &channel).await?;
    setup.tear_down(&args, &channel).await?;
    let _ = amqp.close(200, "".into()).await;
    let passed = verdict::judge(
        &verdict::Run {
            args: &args,
            tally: &tally,
            accepted: &accepted,
            poison_ids: &poison_ids,
            drained,
            notifications,
            graceful,
            fault_names: setup.target.fault_names(),
            wall_time: start.elapsed(),
        },
        observed,
    );
    if !passed {
        eprintln!("FAILED (logs: {})", logs.display());
        std::process::exit(1);
    }
    println!("\nfaults: all checks passed");
    Ok(())
}

/// Wait (a minute at most) until the producer answers `/readyz` with 200.
async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let ready = async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .context("producer never became ready")
}
