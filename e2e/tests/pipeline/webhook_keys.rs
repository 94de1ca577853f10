//! A signing key per destination (issue 16, item 12): each receiver gets
//! the key derived from the master secret and its origin, so no receiver
//! can forge another's notifications; the admin endpoint hands it out.
//! Receivers are on 127.0.0.1 only.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use e2e::receiver::verify;
use e2e::{spawn_consumer, spawn_producer, wait_for, Receiver, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "an-older-master-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_verifies_with_its_own_key_only() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_SECRET", SECRET),
            ("ADMIN_TOKEN", "adm1n"),
        ],
    )
    .await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_POLL_MS", "100"),
        ],
    )
    .await;
    for r in [&a, &b] {
        producer
            .post_message(&json!({"content": "signed", "callback_url": r.url("/hook")}))
            .await;
    }
    let got_a = wait_for("a's notification", Duration::from_secs(20), || async {
        a.received().into_iter().next()
    })
    .await;
    let got_b = wait_for("b's notification", Duration::from_secs(20), || async {
        b.received().into_iter().next()
    })
    .await;
    assert!(verify(&a.key(SECRET), &got_a), "a's key verifies a's");
    assert!(verify(&b.key(SECRET), &got_b), "b's key verifies b's");
    assert!(!verify(&a.key(SECRET), &got_b), "a's key cannot verify b's");
    assert!(!verify(&b.key(SECRET), &got_a), "b's key cannot verify a's");
    let master = BASE64.decode(&SECRET[6..]).unwrap();
    assert!(!verify(&master, &got_a), "the master key signs nothing");
    assert!(
        !got_a.signature.contains(' '),
        "one signature without a previous secret"
    );

    // The admin endpoint hands out the same key, origins normalised.
    for (asked, expected) in [
        (a.origin(), a.origin()),
        (format!("HTTP://{}/", a.addr), a.origin()),
        (
            "https://Example.COM".to_owned(),
            "https://example.com:443".to_owned(),
        ),
        ("http://[::1]:80".to_owned(), "http://[::1]:80".to_owned()),
    ] {
        let path = format!("/webhooks/signing-key?origin={}", encode(&asked));
        let res = producer.admin(Method::GET, &path).await;
        assert_eq!(res.status(), 200, "{asked}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["origin"], expected, "{asked}");
        let secret = body["secret"].as_str().unwrap();
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key, e2e::receiver::origin_key(SECRET, &expected), "{asked}");
    }
    for bad in [
        "",
        "ftp://x.example",
        "http://x.example/path",
        "http://u:p@x.example",
        "nope",
    ] {
        let path = format!("/webhooks/signing-key?origin={}", encode(bad));
        let res = producer.admin(Method::GET, &path).await;
        assert_eq!(res.status(), 400, "{bad:?}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("origin"), "{body}");
    }
    let missing = producer.admin(Method::GET, "/webhooks/signing-key").await;
    assert_eq!(missing.status(), 400);
    // Admin only.
    let path = format!("/webhooks/signing-key?origin={}", encode(&a.origin()));
    assert_eq!(producer.get(&path).await.status(), 401);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_secret_the_endpoint_says_so() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm1n")]).await;
    let res = producer
        .admin(
            Method::GET,
            "/webhooks/signing-key?origin=https%3A%2F%2Fexample.com",
        )
        .await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("WEBHOOK_SECRET"),
        "{body}"
    );
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_keys_sign() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let r = Receiver::start().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_PREVIOUS_SECRET", OLD_SECRET),
            ("ADMIN_TOKEN", "adm1n"),
        ],
    )
    .await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_PREVIOUS_SECRET", OLD_SECRET),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_POLL_MS", "100"),
        ],
    )
    .await;
    producer
        .post_message(&json!({"content": "rotating", "callback_url": r.url("/hook")}))
        .await;
    let got = wait_for("the notification", Duration::from_secs(20), || async {
        r.received().into_iter().next()
    })
    .await;
    // `v1,<new> v1,<old>`: a receiver holding either key verifies it.
    assert_eq!(got.signature.split(' ').count(), 2, "{}", got.signature);
    assert!(verify(&r.key(SECRET), &got));
    assert!(verify(&r.key(OLD_SECRET), &got));
    let path = format!("/webhooks/signing-key?origin={}", encode(&r.origin()));
    let body: Value = producer
        .admin(Method::GET, &path)
        .await
        .json()
        .await
        .unwrap();
    let previous = body["previous_secret"].as_str().unwrap();
    let key = BASE64
        .decode(previous.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(key, r.key(OLD_SECRET));
    consumer.stop().await;
    producer.stop().await;
}

/// `text` percent-encoded for a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
