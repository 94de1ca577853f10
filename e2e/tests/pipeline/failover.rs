//! Several broker nodes in `AMQP_URL` (issue 10): a process moves to the
//! next live node when its own goes away, without waiting for it. Two TCP
//! proxies to the local broker stand in for two nodes of a cluster.

use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_move_to_the_next_node() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let a = TcpProxy::to_broker().await;
    let b = TcpProxy::to_broker().await;
    let url = format!("{},{}", a.amqp_url(), b.amqp_url());
    let producer = spawn_producer(&db, &broker, &[("AMQP_URL", &url)]).await;
    let consumer = spawn_consumer(&db, &broker, &[("AMQP_URL", &url)]).await;

    let ready = producer.get_json("/readyz").await;
    let first = ready["node"].as_str().unwrap().to_owned();
    assert!(
        first == a.addr.to_string() || first == b.addr.to_string(),
        "{ready}"
    );
    let res = producer
        .post_json("/messages", &json!({"content": "before"}))
        .await;
    assert_eq!(res.status(), 202);

    // The node the producer is on goes away for good.
    let (gone, other) = if first == a.addr.to_string() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    gone.cut();
    let moved: Value = wait_for(
        "the producer on the other node",
        Duration::from_secs(20),
        || async {
            let body = producer.get_json("/readyz").await;
            (body["status"] == "ready" && body["node"] == other.addr.to_string()).then_some(body)
        },
    )
    .await;
    assert_eq!(moved["broker"], "up");
    let res = producer
        .post_json("/messages", &json!({"content": "after"}))
        .await;
    assert_eq!(res.status(), 202);

    // The consumer, wherever it was, is on the live node and stores both.
    wait_for("both stored", Duration::from_secs(20), || async {
        (db.count() == 2).then_some(())
    })
    .await;
    let body: Value = consumer.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["node"], other.addr.to_string(), "{body}");
    let metrics = producer.metrics().await;
    assert_eq!(
        metrics.get("pipeline_broker_node", &[("node", &other.addr.to_string())]),
        Some(1.0)
    );
    consumer.stop().await;
    producer.stop().await;
}

/// Quorum queues are declared with `x-quorum-initial-group-size` (so they
/// span a cluster); a store queue an earlier version created without it
/// cannot be redeclared with it, and the services must still start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_from_before_the_group_size_still_work() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let args = broker.topology.store_queue_arguments();
    assert_eq!(
        args.inner().get("x-quorum-initial-group-size"),
        Some(&lapin::types::AMQPValue::LongInt(3))
    );
    // Recreate the store queue the way the previous version did, beside
    // queues that already have the argument: each queue is judged alone.
    let channel = broker.channel().await;
    let store = broker.topology.store_queue.as_str();
    channel
        .queue_delete(store.into(), Default::default())
        .await
        .unwrap();
    let legacy = shared::Topology {
        initial_group_size: None,
        ..broker.topology.clone()
    };
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(store.into(), durable, legacy.store_queue_arguments())
        .await
        .unwrap();
    channel
        .queue_bind(
            store.into(),
            broker.topology.exchange.as_str().into(),
            "".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();

    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let res = producer
        .post_json("/messages", &json!({"content": "old queue"}))
        .await;
    assert_eq!(res.status(), 202);
    wait_for("stored", Duration::from_secs(15), || async {
        (db.count() == 1).then_some(())
    })
    .await;
    consumer.stop().await;
    producer.stop().await;
}
