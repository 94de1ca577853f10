//! `GET /messages/{id}?wait=S` looks the message up once more when the wait
//! runs out: completion events are best effort, the database is the truth.

use std::time::Duration;

use e2e::app::send;
use e2e::{spawn_producer, TestBroker, TestDb};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_stored_when_the_event_never_comes() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // No consumer: nothing will ever announce this message. The row appears
    // in the database the way a consumer whose event was lost would leave it.
    let producer = spawn_producer(&db, &broker, &[]).await;
    let id = Uuid::new_v4();

    let waiting = tokio::spawn(send(
        producer.request(Method::GET, &format!("/messages/{id}?wait=3")),
    ));
    // Let the request make its first look (and find nothing) before the row
    // exists; if it looked later it would only make the test pass trivially.
    tokio::time::sleep(Duration::from_millis(700)).await;
    db.execute(&format!(
        "INSERT INTO messages (id, content, created_at) VALUES ('{id}', 'silent', now())"
    ));

    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200, "stored, even though no event said so");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "stored");
    assert_eq!(body["content"], "silent");
    producer.stop().await;
}
