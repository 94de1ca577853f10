//! Consumer memory stays flat while it stores and announces message after
//! message (issue 8 #1: every dropped publisher confirm used to be parked
//! by lapin for ever, ~650 bytes per completion event).
//!
//! A test binary of its own, so that the process's resident memory is this
//! test's alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{spawn_consumer, wait_for, TestBroker, TestDb};
use shared::Envelope;

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_memory_does_not_grow_with_each_batch() {
    const TOTAL: u64 = 20_000;
    const WARM_UP: u64 = 2_000;
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // Payloads of a realistic size, published before the consumer starts.
    let bodies: Vec<Envelope> = (0..TOTAL)
        .map(|i| Envelope::new(format!("message {i:06} {}", "x".repeat(64))))
        .collect();
    for envelope in &bodies {
        broker.publish(envelope).await;
    }
    drop(bodies);
    // One message per batch: one commit, one event and one ack each.
    let consumer = spawn_consumer(&db, &broker, &[("BATCH_SIZE", "1"), ("PREFETCH", "50")]).await;
    wait_for("warm-up", Duration::from_secs(120), || async {
        (consumer.stats.snapshot().stored >= WARM_UP).then_some(())
    })
    .await;
    let before = rss_bytes();
    wait_for("every message stored", Duration::from_secs(600), || async {
        (consumer.stats.snapshot().stored >= TOTAL).then_some(())
    })
    .await;
    let after = rss_bytes();
    consumer.stop().await;
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {} kB -> {} kB over {} messages ({} bytes per message)",
        before / 1024,
        after / 1024,
        TOTAL - WARM_UP,
        growth / (TOTAL - WARM_UP)
    );
    assert!(
        growth < 4 * 1024 * 1024,
        "resident memory grew by {} kB while storing {} messages",
        growth / 1024,
        TOTAL - WARM_UP
    );
}
