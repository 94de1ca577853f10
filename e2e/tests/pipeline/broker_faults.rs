//! Broker trouble: 503s instead of hangs, and recovery once it is back.

use std::time::Duration;

use e2e::app::send;
use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use lapin::options::QueueDeleteOptions;
use serde_json::{json, Value};
use shared::Envelope;

async fn expect_503(res: reqwest::Response) {
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("unavailable"), "{error}");
    assert!(
        !error.contains("lapin") && !error.contains("IO error"),
        "no internals: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_gets_503_not_a_hang() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("AMQP_TIMEOUT_MS", "300"),
            ("ADMIN_TOKEN", "adm"),
        ],
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10)) // a hang fails the test
        .build()
        .unwrap();
    for path in ["/messages", "/add_message"] {
        let res = send(
            client
                .post(producer.url(path))
                .json(&json!({"content": "x"})),
        )
        .await;
        expect_503(res).await;
    }

    let ready = producer.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        (body["broker"].as_str(), body["database"].as_str()),
        (Some("down"), Some("up"))
    );
    assert_eq!(producer.get("/healthz").await.status(), 200);
    // The dead-letter tools need the broker too.
    for req in [
        client.get(producer.url("/dead-letters")),
        client.post(producer.url("/dead-letters/redrive")),
        client.delete(producer.url("/dead-letters?confirm=true")),
    ] {
        expect_503(req.bearer_auth("adm").send().await.unwrap()).await;
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_answers_503_while_disconnected_and_recovers() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let proxy = TcpProxy::to_broker().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("AMQP_URL", &proxy.amqp_url()),
            ("PUBLISH_TIMEOUT_MS", "2000"),
            ("AMQP_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let body = json!({"content": "x"});
    assert_eq!(producer.post_json("/messages", &body).await.status(), 202);
    assert_eq!(producer.get("/readyz").await.status(), 200);

    proxy.cut();
    // The first request may be in flight on the dead socket; it must end
    // in a 503 within the publish timeout, never a 202 or a hang.
    expect_503(producer.post_json("/messages", &body).await).await;
    wait_for(
        "readyz to report the broker down",
        Duration::from_secs(10),
        || async { (producer.get("/readyz").await.status() == 503).then_some(()) },
    )
    .await;
    expect_503(producer.post_json("/messages", &body).await).await;

    proxy.restore();
    wait_for(
        "the producer to reconnect",
        Duration::from_secs(20),
        || async { (producer.post_json("/messages", &body).await.status() == 202).then_some(()) },
    )
    .await;
    assert_eq!(producer.get("/readyz").await.status(), 200);
    // One before the cut, one after: exactly the 202s are in the queue.
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 2);
    // The metrics tell the same story: one reconnect, connected again, the
    // two 202s accepted and at least the two 503s above rejected.
    let m = producer.metrics().await;
    assert_eq!(m.value("pipeline_broker_reconnects_total", &[]), 1.0);
    assert_eq!(m.value("pipeline_broker_connected", &[]), 1.0);
    assert_eq!(
        m.value(
            "pipeline_producer_messages_accepted_total",
            &[("endpoint", "single")]
        ),
        2.0
    );
    assert!(
        m.value(
            "pipeline_producer_messages_rejected_total",
            &[("reason", "broker_unavailable")]
        ) >= 2.0
    );
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reconnects_and_resumes() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let proxy = TcpProxy::to_broker().await;
    let env = [
        ("AMQP_URL", &*proxy.amqp_url()),
        ("AMQP_TIMEOUT_MS", "1000"),
    ];
    let consumer = spawn_consumer(&db, &broker, &env).await;

    broker.publish(&Envelope::new("before".into())).await;
    wait_for("the first row", Duration::from_secs(10), || async {
        (db.count() == 1).then_some(())
    })
    .await;

    proxy.cut();
    for i in 0..5 {
        broker.publish(&Envelope::new(format!("during {i}"))).await;
    }
    proxy.restore();
    wait_for(
        "rows published while cut off",
        Duration::from_secs(30),
        || async { (db.count() == 6).then_some(()) },
    )
    .await;
    assert!(
        consumer.stats.snapshot().sessions >= 2,
        "it really reconnected"
    );
    assert_eq!(db.distinct_ids(), 6);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_publish_is_a_503() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // Someone deleted the queue: the fanout exchange has nowhere to route.
    broker
        .channel()
        .await
        .queue_delete(
            broker.topology.store_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    expect_503(
        producer
            .post_json("/messages", &json!({"content": "x"}))
            .await,
    )
    .await;
    producer.stop().await;
}
