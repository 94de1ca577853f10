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
    // Everything the consumer took in hand was stored and acked: nothing
    // it received was handed back unsettled.
    let s = stats.snapshot();
    assert_eq!(
        s.received as i64, stored,
        "in-hand deliveries were returned unsettled: {s:?}"
    );
    assert_eq!(s.stored as i64, stored);
    // Everything else is back in the queue: nothing lost. (Some of it may be
    // flagged redelivered: a quorum queue can still push deliveries that were
    // in flight when basic.cancel-ok was sent; lapin drops those for the
    // cancelled tag and the broker requeues them when the channel closes.)
    let rest = broker.take_all(&broker.topology.store_queue).await;
    assert_eq!(stored + rest.len() as i64, N, "nothing lost");
}
