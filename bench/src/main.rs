//! `bench`: measures a running pipeline (producer + consumers) and the
//! stage limits of the machine it runs on, and prints a Markdown table.
//!
//! Usually run through `scripts/bench.sh`, which starts a fresh system.
//! By hand: `bench --url http://127.0.0.1:8080 --database-url postgres://… \
//!   --amqp-url amqp://… [--n 50000] [--c 64] [--batch 100] [--pids a=1,b=2]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::flags::Flags;
use bench::report::{self, ms};
use bench::{http, memory, rows, stages};
use chrono::Utc;

struct Args {
    url: SocketAddr,
    database_url: String,
    server_url: String,
    amqp_url: String,
    n: usize,
    connections: usize,
    batch: usize,
    batch_connections: usize,
    paced_secs: u64,
    stage_n: usize,
    pids: Vec<(String, u32)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let flags = Flags::parse()?;
    let database_url = flags.string("database-url", "postgres://root@127.0.0.1:5432/pipeline");
    let server_url = database_url
        .rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .context("--database-url needs a database name")?;
    Ok(Args {
        url: flags.addr("url", "http://127.0.0.1:8080")?,
        database_url,
        server_url,
        amqp_url: flags.string("amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        n: flags.number("n", 50_000)?,
        connections: flags.number("c", 64)?,
        batch: flags.number("batch", 100)?,
        batch_connections: flags.number("batch-c", 8)?,
        paced_secs: flags.number("paced-secs", 10)?,
        stage_n: flags.number("stage-n", 50_000)?,
        pids: flags.pids("pids")?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let tag = format!("bench-{}", Utc::now().format("%H%M%S"));
    let mut table: Vec<(String, String)> = Vec::new();

    // 1. Stage limits.
    eprintln!("stage: broker alone ({} messages)…", args.stage_n);
    let broker = stages::broker(&args.amqp_url, args.stage_n, 2000).await?;
    table.push((
        "Broker alone: publish+confirm → consume+ack".into(),
        format!("{broker:.0} msg/s"),
    ));
    eprintln!("stage: database alone ({} rows)…", args.stage_n);
    let (server, n) = (args.server_url.clone(), args.stage_n);
    let database =
        tokio::task::spawn_blocking(move || stages::database(&server, n, 500, 2)).await??;
    table.push((
        "Database alone: 2 writers, 500-row INSERT … ON CONFLICT".into(),
        format!("{database:.0} rows/s"),
    ));

    // 2. Single-message POSTs as fast as they go; end to end until all rows commit.
    eprintln!(
        "load: {} single POSTs over {} connections…",
        args.n, args.connections
    );
    let since = Utc::now() - chrono::Duration::seconds(1);
    let started = Instant::now();
    let single = http::run(http::Plan {
        addr: args.url,
        path: "/messages",
        requests: args.n,
        connections: args.connections,
        per_request: 1,
        rate: None,
        tag: tag.clone(),
        keyed: false,
        callback_every: 0,
        deliver_at: http::DeliverAt::Now,
    })
    .await?;
    let stored_at = rows::wait_all(
        &args.database_url,
        single.ids.len(),
        since,
        Duration::from_secs(600),
    )
    .await?;
    let e2e = single.ids.len() as f64 / (stored_at - started).as_secs_f64();
    let check = rows::verify(&args.database_url, single.ids.clone(), since).await?;
    table.push((
        format!("POST /messages, {} connections", args.connections),
        format!(
            "{:.0} req/s, p50 {}, p99 {}",
            single.rps(),
            ms(single.quantile(0.5)),
            ms(single.quantile(0.99))
        ),
    ));
    table.push(("  errors (non-202)".into(), single.errors.to_string()));
    table.push((
        "End to end: first request → last row committed".into(),
        format!("{e2e:.0} msg/s"),
    ));
    table.push((
        "  rows for the 202 ids / extra rows / duplicates".into(),
        check.to_string(),
    ));

    // 3. Batch endpoint.
    let batch_requests = args.n.div_ceil(args.batch);
    eprintln!(
        "load: {batch_requests} batch POSTs of {} over {} connections…",
        args.batch, args.batch_connections
    );
    let since = Utc::now() - chrono::Duration::milliseconds(10);
    let batch = http::run(http::Plan {
        addr: args.url,
        path: "/messages/batch",
        requests: batch_requests,
        connections: args.batch_connections,
        per_request: args.batch,
        rate: None,
        tag: tag.clone(),
        keyed: false,
        callback_every: 0,
        deliver_at: http::DeliverAt::Now,
    })
    .await?;
    let msgs = batch.ids.len() as f64 / batch.elapsed.as_secs_f64();
    table.push((
        format!(
            "POST /messages/batch ({} per request), {} connections",
            args.batch, args.batch_connections
        ),
        format!(
            "{msgs:.0} msg/s ingest, p50 {}, p99 {}",
            ms(batch.quantile(0.5)),
            ms(batch.quantile(0.99))
        ),
    ));
    rows::wait_all(
        &args.database_url,
        batch.ids.len(),
        since,
        Duration::from_secs(600),
    )
    .await?;
    let check = rows::verify(&args.database_url, batch.ids.clone(), since).await?;
    table.push((
        "  rows for the 202 ids / extra rows / duplicates".into(),
        check.to_string(),
    ));

    // 4. Paced at half the end-to-end rate: publish → commit latency.
    let rate = (e2e / 2.0).max(1.0);
    let paced_n = (rate * args.paced_secs as f64) as usize;
    eprintln!("load: {paced_n} POSTs paced at {rate:.0}/s…");
    let since = Utc::now() - chrono::Duration::milliseconds(10);
    let paced = http::run(http::Plan {
        addr: args.url,
        path: "/messages",
        requests: paced_n,
        connections: args.connections,
        per_request: 1,
        rate: Some(rate),
        tag,
        keyed: false,
        callback_every: 0,
        deliver_at: http::DeliverAt::Now,
    })
    .await?;
    rows::wait_all(
        &args.database_url,
        paced.ids.len(),
        since,
        Duration::from_secs(600),
    )
    .await?;
    let (p50, p99) = rows::commit_latency(&args.database_url, paced.ids.clone()).await?;
    table.push((
        format!("Publish → commit latency at {rate:.0} msg/s (half the end-to-end rate)"),
        format!("p50 {}, p99 {}", ms(p50), ms(p99)),
    ));
    table.push((
        "  HTTP latency at that rate".into(),
        format!(
            "p50 {}, p99 {}",
            ms(paced.quantile(0.5)),
            ms(paced.quantile(0.99))
        ),
    ));

    // 5. Memory of the processes under test.
    for (name, pid) in &args.pids {
        table.push((
            format!("Peak resident memory: {name}"),
            memory::peak_rss(*pid),
        ));
    }

    report::table(
        &["Measurement", "Result"],
        table.into_iter().map(|(k, v)| [k, v]),
    );
    Ok(())
}
