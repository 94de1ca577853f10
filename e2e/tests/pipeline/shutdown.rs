//! A graceful shutdown settles everything it was handed.

use std::time::Duration;

use e2e::{spawn_consumer, wait_for, TestBroker, TestDb};
use shared::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_leaves_nothing_unacked() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    const N: i64 = 3000;
    for i in 0..N {
        broker.publish(&Envelope::new(format!("m{i}"))).await;
    }
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("BATCH_SIZE", "50"),
            ("PREFETCH", "400"),
            ("BATCH_WAIT_MS", "5"),
        ],
    )
    .await;
    wait_for(
        "the consumer to be mid-stream",
        Duration::from_secs(20),
        || async { (db.count() > 0).then_some(()) },
    )
    .await;
    let stats = consumer.stats.clone();
    consumer.stop().await; // what SIGTERM does

    let stored = db.count();
    assert_eq!(db.distinct_ids(), stored);
    assert!(stored < N, "shutdown came too late to test anything");
    // Everything not stored is back in the queue, and none of it was ever
    // delivered before: what the consumer had in hand was stored and acked,
    // not handed back.
    let rest = broker.take_all(&broker.topology.store_queue).await;
    assert_eq!(stored + rest.len() as i64, N, "nothing lost");
    let redelivered = rest.iter().filter(|m| m.delivery.redelivered).count();
    assert_eq!(redelivered, 0, "in-hand deliveries were returned unsettled");
    assert_eq!(stats.snapshot().stored as i64, stored);
}
