//! Several broker nodes in `AMQP_URL` (issue 10): a process moves to the
//! next live node when its own goes away, without waiting for it. Two TCP
//! proxies to the local broker stand in for two nodes of a cluster.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use serde_json::{json, Value};

fn amqp_addr() -> SocketAddr {
    "127.0.0.1:5672".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_move_to_the_next_node() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let a = TcpProxy::start(amqp_addr()).await;
    let b = TcpProxy::start(amqp_addr()).await;
    let url = format!("{},{}", a.amqp_url(), b.amqp_url());
    let producer = spawn_producer(&db, &broker, &[("AMQP_URL", &url)]).await;
    let consumer = spawn_consumer(&db, &broker, &[("AMQP_URL", &url)]).await;

    let ready: Value = producer.get("/readyz").await.json().await.unwrap();
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
            let body: Value = producer.get("/readyz").await.json().await.unwrap();
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
