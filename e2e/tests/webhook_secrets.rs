//! Secrets in callback URLs stay secret (issue 16, item 10): the userinfo
//! and the query of a callback URL appear in no log line and no API field,
//! the admin listing included. A binary of its own because it installs a
//! logger that keeps every line (the logger is global to a process).
//! Receivers are on 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, Receiver, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "pa55word-in-userinfo";
const TOKEN: &str = "s3cret-in-query";

/// Every log line of this process.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Keeper;

impl log::Log for Keeper {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES
            .lock()
            .unwrap()
            .push(format!("{} {}", record.target(), record.args()));
    }
    fn flush(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_secrets_appear_in_no_log_line_and_no_api_field() {
    log::set_logger(&Keeper).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let failing = Receiver::start().await;
    failing.script(&[500, 500]);
    let down = Receiver::start().await;
    down.stop();
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("ADMIN_TOKEN", "adm1n"),
        ],
    )
    .await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("WEBHOOK_SECRET", "test-webhook-secret"),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_MAX_ATTEMPTS", "2"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_POLL_MS", "100"),
        ],
    )
    .await;
    let secret_url = |r: &Receiver| {
        format!(
            "http://hook-user:{PASSWORD}@{}/hook/path?token={TOKEN}&x=1#frag",
            r.addr
        )
    };
    let mut ids = Vec::new();
    for r in [&failing, &down] {
        ids.push(
            producer
                .post_message(&json!({"content": "secretive", "callback_url": secret_url(r)}))
                .await,
        );
    }
    for id in &ids {
        producer
            .wait_for_message(id, "failed for good", Duration::from_secs(30), |m| {
                m["notification"]["status"] == "failed"
            })
            .await;
    }
    // The receiver did get the credentials: they are the receiver's to see.
    assert_eq!(failing.received().len(), 2);

    let mut shown = Vec::new();
    for id in &ids {
        shown.push(producer.get_json(&format!("/messages/{id}")).await);
    }
    let listed: Value = producer
        .admin(Method::GET, "/webhooks/failed")
        .await
        .json()
        .await
        .unwrap();
    let urls: Vec<&str> = listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["url"].as_str().unwrap())
        .collect();
    for r in [&failing, &down] {
        let redacted = format!("http://{}/hook/path", r.addr);
        assert!(urls.contains(&redacted.as_str()), "{urls:?}");
    }
    consumer.stop().await;
    producer.stop().await;

    let lines = LINES.lock().unwrap().clone();
    let webhook_lines: Vec<&String> = lines.iter().filter(|l| l.contains("webhook")).collect();
    assert!(
        webhook_lines
            .iter()
            .any(|l| l.contains(&format!("{}/hook/path", failing.addr))),
        "the attempts are logged, with where they went: {webhook_lines:#?}"
    );
    let everything = format!("{lines:?} {shown:?} {listed}");
    for secret in [PASSWORD, TOKEN, "hook-user", "frag"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
}
