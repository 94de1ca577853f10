//! `soak`: a long run at a steady rate, sampling the resident memory of the
//! producer and consumers throughout, to catch what grows per message (a
//! leak shows at a trickle long before it shows in a benchmark).
//!
//! Usually run through `scripts/soak.sh`. Passes when every 202 is stored
//! exactly once and no process grew by 5 MB or more from the sample at 10 %
//! of the run to the end. Exits non-zero otherwise.
//!
//! `soak --url http://127.0.0.1:8080 --database-url postgres://… \
//!   --n 1000000 --rate 3000 --c 16 --pids producer=1,consumer1=2`

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::bail;
use bench::flags::Flags;
use bench::memory::rss;
use bench::report::mb;
use bench::{http, rows};
use chrono::Utc;

/// Growth from 10 % of the run to its end that fails the soak.
const MAX_GROWTH_BYTES: u64 = 5 * 1024 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse()?;
    let addr = flags.addr("url", "http://127.0.0.1:8080")?;
    let database_url = flags.string("database-url", "postgres://root@127.0.0.1:5432/pipeline");
    let n: usize = flags.number("n", 1_000_000)?;
    let rate: f64 = flags.number("rate", 3000.0)?;
    let connections: usize = flags.number("c", 16)?;
    let pids = flags.pids("pids")?;

    // Sample every process every second until the load is done.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let sampled = pids.clone();
    let sampler = tokio::spawn(async move {
        let started = Instant::now();
        let mut samples: Vec<(Duration, Vec<Option<u64>>)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let row = sampled.iter().map(|(_, pid)| rss(*pid)).collect();
                    samples.push((started.elapsed(), row));
                }
                _ = done_rx.changed() => break,
            }
        }
        samples
    });

    eprintln!("soak: {n} POSTs paced at {rate:.0}/s over {connections} connections…");
    let since = Utc::now() - chrono::Duration::seconds(1);
    let started = Instant::now();
    let load = http::run(http::Plan {
        addr,
        path: "/messages",
        requests: n,
        connections,
        per_request: 1,
        rate: Some(rate),
        tag: format!("soak-{}", Utc::now().format("%H%M%S")),
    })
    .await?;
    let stored_at = rows::wait_all(
        &database_url,
        load.ids.len(),
        since,
        Duration::from_secs(900),
    )
    .await?;
    let elapsed = stored_at - started;
    // One more sample after the last commit, then stop sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = done_tx.send(true);
    let samples = sampler.await?;
    let check = rows::verify(&database_url, load.ids.clone(), since).await?;

    println!("| Soak | Result |");
    println!("| --- | --- |");
    println!(
        "| Messages | {} sent, {} accepted (202), {:.0} msg/s end to end over {:.0} s |",
        n,
        load.ids.len(),
        load.ids.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("| Rows vs 202s (found / extra / duplicates) | {check} |");
    let tenth = elapsed.mul_f64(0.1);
    let mut failed = !(check.found == check.expected as i64
        && check.extra == 0
        && check.duplicates == 0
        && load.ids.len() == n);
    for (i, (name, _)) in pids.iter().enumerate() {
        let series: Vec<(Duration, u64)> = samples
            .iter()
            .filter_map(|(t, row)| row[i].map(|v| (*t, v)))
            .collect();
        let from = series.iter().find(|(t, _)| *t >= tenth).map(|(_, v)| *v);
        let (to, peak) = (
            series.last().map(|(_, v)| *v),
            series.iter().map(|(_, v)| *v).max(),
        );
        let (Some(from), Some(to), Some(peak)) = (from, to, peak) else {
            println!("| {name} resident memory | no samples (process gone?) |");
            failed = true;
            continue;
        };
        let growth = to.saturating_sub(from);
        let verdict = if growth < MAX_GROWTH_BYTES {
            "ok"
        } else {
            "GREW"
        };
        failed |= growth >= MAX_GROWTH_BYTES;
        println!(
            "| {name} resident memory | {} at 10 % → {} at the end (peak {}): +{} ({verdict}) |",
            mb(from),
            mb(to),
            mb(peak),
            mb(growth)
        );
    }
    if failed {
        bail!(
            "soak failed: lost, duplicated or unaccepted messages, or memory grew by 5 MB or more"
        );
    }
    Ok(())
}
