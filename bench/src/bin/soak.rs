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
//!
//! The retention mode (`--retention true`, through `scripts/soak.sh
//! --retention`): an `Idempotency-Key` on every request, a callback on
//! every `--callbacks`-th, and the database's size on disk sampled every
//! 5 s. Stored messages go while the run goes on (a short
//! `MESSAGE_RETENTION`), so exactly once is checked on the consumers'
//! counters (`--metrics`, their `/metrics` URLs: rows newly stored, summed,
//! equal the 202s) instead of the rows; it passes when the size over the
//! second half stays within 10 %. `--retention false` with the same flags
//! is the run to compare with: there the size grows.

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
    let retention = flags.string("retention", "false") == "true";
    let keyed = flags.string("keyed", "false") == "true";
    let callback_every: usize = flags.number("callbacks", 0)?;
    let metrics_urls: Vec<String> = flags
        .optional("metrics")
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let (size_done, size_rx) = tokio::sync::watch::channel(false);
    let sizes = tokio::spawn(bench::disk::sample(
        database_url.clone(),
        Duration::from_secs(5),
        size_rx,
    ));

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
        keyed,
        callback_every,
        deliver_at: http::DeliverAt::Now,
    })
    .await?;
    let stored_at = if retention {
        wait_counted(&metrics_urls, load.ids.len(), Duration::from_secs(900)).await?
    } else {
        rows::wait_all(
            &database_url,
            load.ids.len(),
            since,
            Duration::from_secs(900),
        )
        .await?
    };
    let elapsed = stored_at - started;
    // One more sample after the last commit, then stop sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = done_tx.send(true);
    let samples = sampler.await?;
    let _ = size_done.send(true);
    let sizes = sizes.await?;

    println!("| Soak | Result |");
    println!("| --- | --- |");
    println!(
        "| Messages | {} sent, {} accepted (202), {:.0} msg/s end to end over {:.0} s |",
        n,
        load.ids.len(),
        load.ids.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let mut failed = load.ids.len() != n;
    if retention {
        let stored = stored_total(&metrics_urls).await?;
        println!(
            "| Rows newly stored (consumers' counters) vs 202s | {stored} of {} ({}) |",
            load.ids.len(),
            if stored == load.ids.len() as u64 {
                "exact"
            } else {
                "MISMATCH"
            }
        );
        failed |= stored != load.ids.len() as u64;
    } else {
        let check = rows::verify(&database_url, load.ids.clone(), since).await?;
        println!("| Rows vs 202s (found / extra / duplicates) | {check} |");
        failed |=
            !(check.found == check.expected as i64 && check.extra == 0 && check.duplicates == 0);
    }
    match bench::disk::Flatness::of(&sizes, elapsed) {
        Some(f) => {
            let verdict = match (retention, f.spread() <= 0.10) {
                (true, true) => "flat",
                (true, false) => "NOT FLAT",
                (false, _) => "no retention",
            };
            failed |= retention && f.spread() > 0.10;
            println!(
                "| Database on disk, second half | {} at the middle → {} at the end ({:+.1} %); {} … {} ({:.1} % spread, {verdict}) |",
                mb(f.middle),
                mb(f.end),
                (f.end as f64 / f.middle.max(1) as f64 - 1.0) * 100.0,
                mb(f.min),
                mb(f.max),
                f.spread() * 100.0
            );
        }
        None => println!("| Database on disk | no samples |"),
    }
    // The whole curve, coarse: what the docs quote (a sawtooth shows as
    // steps here; the spread above is over every 5 s sample).
    let every_30s: Vec<String> = sizes
        .iter()
        .step_by(6)
        .map(|(_, b)| format!("{:.0}", *b as f64 / 1_048_576.0))
        .collect();
    println!(
        "| Database on disk every 30 s (MB) | {} |",
        every_30s.join(" ")
    );
    let tenth = elapsed.mul_f64(0.1);
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
            "soak failed: lost, duplicated or unaccepted messages, memory grew by 5 MB or more, or (retention) the database grew by more than 10 %"
        );
    }
    Ok(())
}

/// Rows newly stored, summed over the consumers' `/metrics`.
async fn stored_total(urls: &[String]) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let mut total = 0.0;
    for url in urls {
        let text = client.get(url).send().await?.text().await?;
        total += e2e::Exposition::parse(&text).value("pipeline_consumer_rows_stored_total", &[]);
    }
    Ok(total as u64)
}

/// Poll the consumers' counters until `expected` rows are stored.
async fn wait_counted(
    urls: &[String],
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    if urls.is_empty() {
        bail!("--retention true needs --metrics (the consumers' /metrics URLs)");
    }
    let deadline = Instant::now() + timeout;
    loop {
        let stored = stored_total(urls).await?;
        if stored >= expected as u64 {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("only {stored} of {expected} rows stored after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
