//! Webhooks with limits (issue 16, items 11 and 13): callback ports, the
//! SSRF filter's IPv6 embeddings, error categories instead of addresses,
//! a per-destination concurrency limit and a circuit breaker.
//!
//! Deliveries go only to receivers on 127.0.0.1. URLs to other addresses
//! are either refused at the door or posted to a producer with no
//! consumer, so nothing is ever sent there.

use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, Receiver, TestApp, TestBroker, TestDb};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "test-webhook-secret";
/// 127.0.0.1 on any port: the receivers' ports are random.
const LOCAL_ANY_PORT: &str = "127.0.0.1:*";

fn consumer_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_ALLOWED_HOSTS", LOCAL_ANY_PORT),
        ("WEBHOOK_RETRY_BASE_MS", "100"),
        ("WEBHOOK_RETRY_MAX_MS", "200"),
        ("WEBHOOK_POLL_MS", "100"),
    ];
    env.extend_from_slice(extra);
    env
}

async fn post_callback(producer: &TestApp, url: &str) -> (u16, Value) {
    let res = producer
        .post_json("/messages", &json!({"content": "x", "callback_url": url}))
        .await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_ports_are_80_and_443_unless_the_host_and_port_are_listed() {
    // No consumer: a URL accepted here is never delivered.
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[(
            "WEBHOOK_ALLOWED_HOSTS",
            "127.0.0.1, 127.0.0.2:8080, 127.0.0.3:*",
        )],
    )
    .await;
    for (url, accepted) in [
        // A public address: the usual ports only.
        ("http://93.184.215.14/hook", true),
        ("https://93.184.215.14:443/hook", true),
        ("http://93.184.215.14:22/", false),
        ("https://93.184.215.14:8443/hook", false),
        // Listed without a port: the usual ports only.
        ("http://127.0.0.1/hook", true),
        ("http://127.0.0.1:9/hook", false),
        // Listed with a port: that one too.
        ("http://127.0.0.2:8080/hook", true),
        ("http://127.0.0.2:8081/hook", false),
        // Listed with any port.
        ("http://127.0.0.3:9/hook", true),
    ] {
        let (status, body) = post_callback(&producer, url).await;
        if accepted {
            assert_eq!(status, 202, "{url}: {body}");
        } else {
            assert_eq!(status, 400, "{url}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("port"), "{url}: {error}");
            assert!(error.contains("WEBHOOK_ALLOWED_HOSTS"), "{url}: {error}");
        }
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_names_a_category_not_what_the_resolver_answered() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // `localhost` resolves from /etc/hosts: no query leaves the machine.
    let (status, body) = post_callback(&producer, "http://localhost/hook").await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("callback_url"), "{error}");
    assert!(error.contains("forbidden_address"), "{error}");
    for answer in ["127.0.0.1", "::1"] {
        assert!(
            !error.contains(answer),
            "the resolver's answer leaked: {error}"
        );
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_embeddings_of_ipv4_and_the_6to4_relay_are_refused_at_the_door() {
    // No consumer: were one accepted, it would never be delivered.
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    for url in [
        "http://[::127.0.0.1]/",         // IPv4-compatible (::/96)
        "http://[::8.8.8.8]/",           // IPv4-compatible, public inside
        "http://[2002:7f00:1::]/",       // 6to4 of 127.0.0.1
        "http://[2002:808:808::1]/",     // 6to4 of a public address
        "http://[2001:0:4136:e378::1]/", // Teredo (2001:0::/32)
        "http://192.88.99.1/",           // 6to4 relay anycast
        "http://[64:ff9b::7f00:1]/",     // NAT64 (refused before too)
    ] {
        let (status, body) = post_callback(&producer, url).await;
        assert_eq!(status, 400, "{url}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("callback_url"), "{url}: {error}");
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_error_is_a_category_without_addresses() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let failing = Receiver::start().await;
    failing.script(&[503]);
    let down = Receiver::start().await;
    down.stop();
    let slow = Receiver::start().await;
    slow.slow(Duration::from_secs(3));
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", LOCAL_ANY_PORT)]).await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &consumer_env(&[("WEBHOOK_MAX_ATTEMPTS", "1"), ("WEBHOOK_TIMEOUT_MS", "500")]),
    )
    .await;
    let mut expected: Vec<(Uuid, &str, &Receiver)> = Vec::new();
    for (receiver, category) in [
        (&failing, "http_5xx"),
        (&down, "refused"),
        (&slow, "timeout"),
    ] {
        let id = producer
            .post_message(&json!({"content": category, "callback_url": receiver.url("/hook")}))
            .await;
        expected.push((id, category, receiver));
    }
    for (id, category, receiver) in expected {
        let status = producer
            .wait_for_message(id, category, Duration::from_secs(30), |m| {
                m["notification"]["status"] == "failed"
            })
            .await;
        let notification = &status["notification"];
        assert_eq!(notification["last_error"], category, "{notification}");
        let text = notification.to_string();
        assert!(
            !text.contains(&receiver.addr.port().to_string()),
            "an address in {text}"
        );
    }
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_gets_its_share_of_slots_and_no_more() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let slow = Receiver::start().await;
    slow.slow(Duration::from_secs(5));
    let quick = Receiver::start().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", LOCAL_ANY_PORT)]).await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &consumer_env(&[
            ("WEBHOOK_CONCURRENCY", "4"),
            ("WEBHOOK_CONCURRENCY_PER_DESTINATION", "1"),
            ("WEBHOOK_TIMEOUT_MS", "10000"),
        ]),
    )
    .await;
    for i in 0..6 {
        producer
            .post_message(&json!({"content": format!("slow {i}"), "callback_url": slow.url("/s")}))
            .await;
    }
    wait_for(
        "the slow receiver busy",
        Duration::from_secs(20),
        || async { (slow.in_flight().0 >= 1).then_some(()) },
    )
    .await;
    for i in 0..3 {
        producer
            .post_message(
                &json!({"content": format!("quick {i}"), "callback_url": quick.url("/q")}),
            )
            .await;
    }
    // Six answers of 5 s, one at a time, take 30 s: the quick receiver's
    // three arrive long before, through the slots the slow one may not take.
    wait_for(
        "the quick notifications",
        Duration::from_secs(20),
        || async { (quick.received().len() == 3).then_some(()) },
    )
    .await;
    assert!(
        slow.received().len() < 6,
        "the quick ones waited for the slow"
    );
    let (_, most) = slow.in_flight();
    assert_eq!(most, 1, "one attempt at a time per destination");
    let metrics = consumer.metrics().await;
    assert!(
        metrics.value("pipeline_webhook_deferred_total", &[("reason", "busy")]) >= 1.0,
        "deferrals are counted"
    );
    drop(consumer);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_is_paused_by_the_circuit_breaker() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let failing = Receiver::start().await;
    failing.script(&[500; 50]);
    let healthy = Receiver::start().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", LOCAL_ANY_PORT)]).await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &consumer_env(&[
            ("WEBHOOK_CONCURRENCY_PER_DESTINATION", "1"),
            ("WEBHOOK_BREAKER_FAILURES", "3"),
            ("WEBHOOK_BREAKER_PAUSE_MS", "60000"),
        ]),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            producer
                .post_message(
                    &json!({"content": format!("fail {i}"), "callback_url": failing.url("/f")}),
                )
                .await,
        );
    }
    let metrics = wait_for("the breaker to open", Duration::from_secs(30), || async {
        let m = consumer.metrics().await;
        // Every pending notification put off to the end of the pause.
        let due_soon = db.scalar(
            "SELECT count(*) AS n FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at < now() + interval '30 seconds'",
        );
        (m.get("pipeline_webhook_destinations_paused", &[]) == Some(1.0)
            && m.value("pipeline_webhook_deferred_total", &[("reason", "paused")]) >= 1.0
            && due_soon == 0)
            .then_some(m)
    })
    .await;
    assert_eq!(
        metrics.value("pipeline_webhook_breaker_opened_total", &[]),
        1.0
    );
    // Three failures in a row opened it; nothing more reached the receiver,
    // and the pause costs the notifications no attempts.
    assert_eq!(failing.received().len(), 3);
    let attempts = db.scalar(
        "SELECT coalesce(sum(attempts), 0)::bigint AS n FROM webhook_deliveries WHERE status = 'pending'",
    );
    assert_eq!(attempts, 3, "only the attempts made count");
    // Another destination is not held up.
    let id = producer
        .post_message(&json!({"content": "fine", "callback_url": healthy.url("/h")}))
        .await;
    producer
        .wait_for_message(id, "delivered elsewhere", Duration::from_secs(20), |m| {
            m["notification"]["status"] == "delivered"
        })
        .await;
    assert_eq!(failing.received().len(), 3, "still paused");
    consumer.stop().await;
    producer.stop().await;
}
