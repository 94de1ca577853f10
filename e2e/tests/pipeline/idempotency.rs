//! `Idempotency-Key` per the IETF httpapi draft: a key is bound to the
//! request it was first used with. The same request again gets the original
//! answer; a different request with the same key is refused (422), never
//! accepted and silently dropped.

use std::collections::HashSet;
use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_key_with_another_body_is_refused_not_dropped() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let first = producer
        .post_with_key("/messages", "k-1", &json!({"content": "pay 10"}))
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();

    // The same request again: the original answer.
    let again = producer
        .post_with_key("/messages", "k-1", &json!({"content": "pay 10"}))
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    // The same key on another request: 422, and nothing is published.
    let other = producer
        .post_with_key("/messages", "k-1", &json!({"content": "pay 99"}))
        .await;
    assert_eq!(other.status(), 422);
    let error = other.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("Idempotency-Key"), "{error}");

    wait_for("the row", Duration::from_secs(10), || async {
        (db.count() == 1).then_some(())
    })
    .await;
    assert_eq!(db.messages()[0].content, "pay 10");
    assert_eq!(
        broker.depth(&broker.topology.store_queue).await,
        0,
        "the refused request published nothing"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_keys_have_their_own_namespace() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let batch = producer
        .post_with_key(
            "/messages/batch",
            "imp",
            &json!([{"content": "a"}, {"content": "b"}]),
        )
        .await;
    assert_eq!(batch.status(), 202);
    let batch: Value = batch.json().await.unwrap();
    // A single POST whose key is literally what batch item 1 once used.
    let single = producer
        .post_with_key("/messages", "imp/1", &json!({"content": "c"}))
        .await;
    assert_eq!(single.status(), 202);
    let single: Value = single.json().await.unwrap();
    assert_ne!(
        single["id"], batch["ids"][1],
        "no collision across namespaces"
    );
    // And the key of a batch does not collide with the same key on a single POST.
    let single = producer
        .post_with_key("/messages", "imp", &json!({"content": "d"}))
        .await;
    assert_eq!(single.status(), 202);

    // A batch retried with its key gets the same ids; changed, it is refused.
    let again = producer
        .post_with_key(
            "/messages/batch",
            "imp",
            &json!([{"content": "a"}, {"content": "b"}]),
        )
        .await;
    assert_eq!(again.json::<Value>().await.unwrap()["ids"], batch["ids"]);
    let changed = producer
        .post_with_key(
            "/messages/batch",
            "imp",
            &json!([{"content": "a"}, {"content": "B"}]),
        )
        .await;
    assert_eq!(changed.status(), 422);

    wait_for("4 rows", Duration::from_secs(10), || async {
        (db.count() == 4).then_some(())
    })
    .await;
    let contents: HashSet<String> = db.messages().into_iter().map(|m| m.content).collect();
    assert_eq!(
        contents,
        HashSet::from(["a", "b", "c", "d"].map(String::from))
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_of_a_key_bind_it_to_one_body() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("DB_POOL_SIZE", "8")]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let requests = (0..16).map(|i| {
        let body = json!({"content": if i % 2 == 0 { "even" } else { "odd" }});
        let producer = &producer;
        async move {
            let res = producer.post_with_key("/messages", "race", &body).await;
            (body, res.status().as_u16())
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let accepted: HashSet<String> = answers
        .iter()
        .filter(|(_, status)| *status == 202)
        .map(|(body, _)| body["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accepted.len(), 1, "one body wins the key: {answers:?}");
    let winner = accepted.into_iter().next().unwrap();
    for (body, status) in &answers {
        let expected = if body["content"] == winner.as_str() {
            202
        } else {
            422
        };
        assert_eq!(*status, expected, "{answers:?}");
    }
    wait_for("the row", Duration::from_secs(10), || async {
        (db.count() == 1).then_some(())
    })
    .await;
    assert_eq!(db.messages()[0].content, winner);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_503_with_the_same_key_succeeds() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let proxy = TcpProxy::to_broker().await;
    let url = proxy.amqp_url();
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("AMQP_URL", url.as_str()),
            ("PUBLISH_TIMEOUT_MS", "2000"),
            ("AMQP_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let body = json!({"content": "retry me"});
    proxy.cut();
    let res = producer.post_with_key("/messages", "k-503", &body).await;
    assert_eq!(res.status(), 503);

    proxy.restore();
    let id: Uuid = wait_for(
        "the retry to be accepted",
        Duration::from_secs(20),
        || async {
            let res = producer.post_with_key("/messages", "k-503", &body).await;
            assert_ne!(
                res.status(),
                422,
                "a failed attempt must not block its retry"
            );
            if res.status() != 202 {
                return None;
            }
            let body: Value = res.json().await.unwrap();
            Some(body["id"].as_str().unwrap().parse().unwrap())
        },
    )
    .await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    wait_for("the row", Duration::from_secs(10), || async {
        (db.count() >= 1).then_some(())
    })
    .await;
    let rows = db.messages();
    assert_eq!((rows.len(), rows[0].id), (1, id));
    consumer.stop().await;
    producer.stop().await;
}

/// The callback URL is part of the request: the same key and content with
/// another callback would silently notify the wrong receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_key_with_another_callback_is_refused() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let post = |body: Value, path: &'static str| {
        let producer = &producer;
        async move {
            producer
                .post_with_key(path, &format!("cb-{path}"), &body)
                .await
                .status()
        }
    };
    let a = json!({"content": "same", "callback_url": "http://127.0.0.1:9/a"});
    let b = json!({"content": "same", "callback_url": "http://127.0.0.1:9/b"});
    assert_eq!(post(a.clone(), "/messages").await, 202);
    assert_eq!(post(a, "/messages").await, 202);
    assert_eq!(post(b, "/messages").await, 422);
    let batch = |url: &str| json!({"messages": [{"content": "same"}], "callback_url": url});
    assert_eq!(
        post(batch("http://127.0.0.1:9/a"), "/messages/batch").await,
        202
    );
    assert_eq!(
        post(batch("http://127.0.0.1:9/b"), "/messages/batch").await,
        422
    );
    producer.stop().await;
}
