//! Prometheus metrics and the consumer's health listener, read the way
//! Prometheus and an orchestrator would: over HTTP, with exact values.

use std::time::Duration;

use e2e::app::send;
use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use lapin::BasicProperties;
use reqwest::Method;
use serde_json::{json, Value};
use shared::Envelope;

const ACCEPTED: &str = "pipeline_producer_messages_accepted_total";
const REJECTED: &str = "pipeline_producer_messages_rejected_total";
const CONFIRM_COUNT: &str = "pipeline_producer_publish_confirm_seconds_count";
const CONNECTED: &str = "pipeline_broker_connected";
const RECONNECTS: &str = "pipeline_broker_reconnects_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_counts_accepted_rejected_and_confirms() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("MAX_BODY_BYTES", "100")]).await;

    // Every series exists before anything happened.
    let m = producer.metrics().await;
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "single")]), 0.0);
    assert_eq!(m.value(REJECTED, &[("reason", "bad_request")]), 0.0);
    assert_eq!(m.value(CONFIRM_COUNT, &[]), 0.0);

    let res = producer
        .post_json("/messages", &json!({"content": "hello"}))
        .await;
    assert_eq!(res.status(), 202);
    let res = producer.post_json("/messages", &json!({})).await;
    assert_eq!(res.status(), 400);

    // The counters move before the answer is sent: no waiting needed.
    let m = producer.metrics().await;
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "single")]), 1.0);
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "batch")]), 0.0);
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "add_message")]), 0.0);
    assert_eq!(m.value(REJECTED, &[("reason", "bad_request")]), 1.0);
    assert_eq!(m.value(REJECTED, &[("reason", "broker_unavailable")]), 0.0);
    assert_eq!(m.value(CONFIRM_COUNT, &[]), 1.0);
    assert_eq!(m.value(CONNECTED, &[]), 1.0);
    assert_eq!(m.value(RECONNECTS, &[]), 0.0);

    // A batch counts its messages; refusals the extractor answers (413,
    // 415) count too; a 400 on GET /messages is not a submission.
    let items = json!([{"content": "a"}, {"content": "b"}, {"content": "c"}]);
    assert_eq!(
        producer.post_json("/messages/batch", &items).await.status(),
        202
    );
    assert_eq!(
        producer
            .post_json("/add_message", &json!({"content": "x".repeat(200)}))
            .await
            .status(),
        413
    );
    let res = send(
        producer
            .request(Method::POST, "/messages")
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(res.status(), 415);
    assert_eq!(producer.get("/messages?limit=0").await.status(), 400);

    let m = producer.metrics().await;
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "single")]), 1.0);
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "batch")]), 3.0);
    assert_eq!(m.value(REJECTED, &[("reason", "bad_request")]), 1.0);
    assert_eq!(m.value(REJECTED, &[("reason", "payload_too_large")]), 1.0);
    assert_eq!(
        m.value(REJECTED, &[("reason", "unsupported_media_type")]),
        1.0
    );
    // One confirm per accepted message, each timed.
    assert_eq!(m.value(CONFIRM_COUNT, &[]), 4.0);
    assert_eq!(
        m.value(
            "pipeline_producer_publish_confirm_seconds_bucket",
            &[("le", "+Inf")]
        ),
        4.0
    );
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 4);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_without_broker_counts_503s_and_reports_disconnected() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("AMQP_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let res = producer
        .post_json("/add_message", &json!({"content": "x"}))
        .await;
    assert_eq!(res.status(), 503);

    let m = producer.metrics().await;
    assert_eq!(m.value(REJECTED, &[("reason", "broker_unavailable")]), 1.0);
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "add_message")]), 0.0);
    assert_eq!(m.value(CONFIRM_COUNT, &[]), 0.0);
    assert_eq!(m.value(CONNECTED, &[]), 0.0);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_counts_rows_dead_letters_and_end_to_end_latency() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    const N: usize = 25;
    for i in 0..N {
        broker.publish(&Envelope::new(format!("m{i}"))).await;
    }
    // No id anywhere: invalid, dead-lettered.
    broker
        .publish_raw(br#"{"content": "no id"}"#, BasicProperties::default())
        .await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let m = wait_for(
        "the consumer to report every row and the dead letter",
        Duration::from_secs(15),
        || async {
            let m = consumer.metrics().await;
            (m.value("pipeline_consumer_rows_stored_total", &[]) == N as f64
                && m.value(
                    "pipeline_consumer_dead_lettered_total",
                    &[("reason", "invalid")],
                ) == 1.0)
                .then_some(m)
        },
    )
    .await;
    assert_eq!(db.count(), N as i64);
    assert_eq!(
        m.value("pipeline_consumer_deliveries_total", &[]),
        (N + 1) as f64
    );
    assert_eq!(m.value("pipeline_end_to_end_seconds_count", &[]), N as f64);
    assert_eq!(
        m.value("pipeline_end_to_end_seconds_bucket", &[("le", "+Inf")]),
        N as f64
    );
    assert_eq!(m.value("pipeline_consumer_duplicates_total", &[]), 0.0);
    for reason in ["rejected", "max_attempts"] {
        assert_eq!(
            m.value(
                "pipeline_consumer_dead_lettered_total",
                &[("reason", reason)]
            ),
            0.0
        );
    }
    assert_eq!(m.value("pipeline_consumer_retries_total", &[]), 0.0);
    assert_eq!(m.value("pipeline_consumer_db_retries_total", &[]), 0.0);
    // Every delivery went through some batch; every stored batch was timed.
    assert_eq!(
        m.value("pipeline_consumer_batch_size_sum", &[]),
        (N + 1) as f64
    );
    assert!(m.value("pipeline_consumer_insert_seconds_count", &[]) >= 1.0);
    assert_eq!(m.value(CONNECTED, &[]), 1.0);
    assert_eq!(m.value(RECONNECTS, &[]), 0.0);
    // The metrics and the stats the other tests use are one set of books.
    let s = consumer.stats.snapshot();
    assert_eq!((s.stored, s.dead_lettered), (N as u64, 1));

    assert_eq!(consumer.get("/healthz").await.status(), 200);
    let ready = consumer.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let uri: lapin::uri::AMQPUri = e2e::broker::amqp_url().parse().unwrap();
    let node = format!("{}:{}", uri.authority.host, uri.authority.port);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "broker": "up", "node": node, "database": "up"})
    );
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_without_broker_is_alive_but_not_ready() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("AMQP_TIMEOUT_MS", "300"),
        ],
    )
    .await;

    assert_eq!(consumer.get("/healthz").await.status(), 200);
    let ready = consumer.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"], "not ready");
    assert_eq!(
        (body["broker"].as_str(), body["database"].as_str()),
        (Some("down"), Some("up"))
    );
    assert_eq!(consumer.metrics().await.value(CONNECTED, &[]), 0.0);
    assert_eq!(consumer.get("/nope").await.status(), 404);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_readiness_follows_the_broker_and_counts_the_reconnect() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let proxy = TcpProxy::to_broker().await;
    let env = [
        ("AMQP_URL", &*proxy.amqp_url()),
        ("AMQP_TIMEOUT_MS", "1000"),
    ];
    let consumer = spawn_consumer(&db, &broker, &env).await;
    let status = |path: &'static str| {
        let consumer = &consumer;
        async move { consumer.get(path).await.status().as_u16() }
    };

    wait_for("readiness", Duration::from_secs(10), || async {
        (status("/readyz").await == 200).then_some(())
    })
    .await;
    proxy.cut();
    wait_for(
        "readyz to report the broker down",
        Duration::from_secs(10),
        || async { (status("/readyz").await == 503).then_some(()) },
    )
    .await;
    assert_eq!(status("/healthz").await, 200);
    proxy.restore();
    wait_for("readiness again", Duration::from_secs(20), || async {
        (status("/readyz").await == 200).then_some(())
    })
    .await;

    let m = consumer.metrics().await;
    assert_eq!(m.value(CONNECTED, &[]), 1.0);
    assert_eq!(m.value(RECONNECTS, &[]), 1.0);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_listener_stops_with_the_consumer() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    assert_eq!(consumer.get("/healthz").await.status(), 200);
    let base = consumer.metrics_base.clone();
    consumer.stop().await;
    // The port is released: nothing answers there any more.
    let after = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(after.is_err(), "still answering after stop: {after:?}");
}

const ACCEPTED_BY_KIND: &str = "pipeline_producer_messages_accepted_by_kind_total";
const STORED_BY_KIND: &str = "pipeline_consumer_rows_stored_by_kind_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_and_stored_are_counted_per_configured_kind() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;

    // Every configured kind's series exists before anything happened.
    let m = producer.metrics().await;
    for kind in ["default", "email", "profile"] {
        assert_eq!(m.value(ACCEPTED_BY_KIND, &[("kind", kind)]), 0.0, "{kind}");
    }
    producer.post_message(&json!({"content": "a"})).await;
    producer
        .post_message(&json!({"content": "b", "kind": "email"}))
        .await;
    let items = json!([
        {"content": "c", "kind": "email"},
        {"content": "d", "kind": "profile"},
        {"content": "e"},
    ]);
    assert_eq!(
        producer.post_json("/messages/batch", &items).await.status(),
        202
    );
    assert_eq!(
        producer
            .post_json("/add_message", &json!({"content": "f", "kind": "profile"}))
            .await
            .status(),
        202
    );
    // Refused kinds never become label values.
    for kind in ["sms", "Nope"] {
        let res = producer
            .post_json("/messages", &json!({"content": "x", "kind": kind}))
            .await;
        assert_eq!(res.status(), 400);
    }
    let m = producer.metrics().await;
    assert_eq!(m.value(ACCEPTED_BY_KIND, &[("kind", "default")]), 2.0);
    assert_eq!(m.value(ACCEPTED_BY_KIND, &[("kind", "email")]), 2.0);
    assert_eq!(m.value(ACCEPTED_BY_KIND, &[("kind", "profile")]), 2.0);
    assert_eq!(m.get(ACCEPTED_BY_KIND, &[("kind", "sms")]), None);
    // The endpoint counter is unchanged by kinds.
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "single")]), 2.0);
    assert_eq!(m.value(ACCEPTED, &[("endpoint", "batch")]), 3.0);

    // A consumer of email only: its stored rows are all email, and every
    // configured kind has its series.
    let consumer = spawn_consumer(&db, &broker, &[("CONSUME_KINDS", "email")]).await;
    let m = wait_for("two emails stored", Duration::from_secs(15), || async {
        let m = consumer.metrics().await;
        (m.value(STORED_BY_KIND, &[("kind", "email")]) == 2.0).then_some(m)
    })
    .await;
    assert_eq!(m.value(STORED_BY_KIND, &[("kind", "default")]), 0.0);
    assert_eq!(m.value(STORED_BY_KIND, &[("kind", "profile")]), 0.0);
    assert_eq!(m.value("pipeline_consumer_rows_stored_total", &[]), 2.0);
    consumer.stop().await;

    // One of every kind stores the rest, each under its own kind.
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let m = wait_for("the rest stored", Duration::from_secs(15), || async {
        let m = consumer.metrics().await;
        (m.value("pipeline_consumer_rows_stored_total", &[]) == 4.0).then_some(m)
    })
    .await;
    assert_eq!(m.value(STORED_BY_KIND, &[("kind", "default")]), 2.0);
    assert_eq!(m.value(STORED_BY_KIND, &[("kind", "profile")]), 2.0);
    assert_eq!(m.value(STORED_BY_KIND, &[("kind", "email")]), 0.0);
    consumer.stop().await;
    producer.stop().await;
}
