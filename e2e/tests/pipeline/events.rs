//! Completion events: SSE on every producer replica, and `?wait`.

use e2e::app::send;
use e2e::{spawn_consumer, spawn_producer, EventStream, TestApp, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn subscribe(producer: &TestApp, id: Uuid) -> EventStream {
    let res = producer.get(&format!("/events?ids={id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    EventStream::new(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_replica_streams_completion_events() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let p1 = spawn_producer(&db, &broker, &[]).await;
    let p2 = spawn_producer(&db, &broker, &[]).await;

    // A keyed message's id is known from its 202 (it derives from the key
    // and the time the key was bound): post first, subscribe, then let a
    // consumer store them.
    let body = json!({"content": "watch me"});
    let post = |key: &'static str| p1.post_with_key("/messages", key, &body);
    let id_of = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()
    };
    // An id nobody asked about: it must be filtered out.
    let other = id_of(post("sse-2").await).await;
    let id = id_of(post("sse-1").await).await;
    let mut s1 = subscribe(&p1, id).await;
    let mut s2 = subscribe(&p2, id).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    for stream in [&mut s1, &mut s2] {
        let event = stream.next().await;
        assert_eq!(
            event,
            json!({"type": "stored", "ids": [id], "kind": "default"}),
            "not {other}"
        );
    }
    drop((s1, s2));
    consumer.stop().await;
    p1.stop().await;
    p2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_wait_answers_when_the_message_is_stored() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;

    let res = producer
        .post_json("/messages", &json!({"content": "later"}))
        .await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No consumer yet: the message is queued, so a waiting GET is pending.
    let waiting = tokio::spawn(send(
        producer.request(Method::GET, &format!("/messages/{id}?wait=25")),
    ));
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["content"].as_str()),
        (Some("stored"), Some("later"))
    );

    // Unknown id: 404 once the wait is over; bad wait: 400.
    let res = producer
        .get(&format!("/messages/{}?wait=1", Uuid::new_v4()))
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "not_found");
    assert_eq!(
        producer
            .get(&format!("/messages/{id}?wait=31"))
            .await
            .status(),
        400
    );
    assert_eq!(producer.get("/events?ids=nope").await.status(), 400);
    consumer.stop().await;
    producer.stop().await;
}
