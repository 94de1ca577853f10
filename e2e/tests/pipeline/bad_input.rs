//! Every kind of bad request gets a clear 4xx JSON error, and nothing
//! reaches the queue.

use e2e::app::send;
use e2e::{spawn_producer, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

async fn expect_error(res: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = res.json().await.unwrap();
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"));
    assert!(
        error.to_lowercase().contains(&needle.to_lowercase()),
        "{status}: {error:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_publish_nothing() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("MAX_BODY_BYTES", "1024")]).await;
    let raw = |path: &str, ctype: &str, body: &'static str| {
        producer
            .request(Method::POST, path)
            .header("content-type", ctype.to_owned())
            .body(body)
            .send()
    };
    let json_ct = "application/json";

    for path in ["/messages", "/add_message"] {
        expect_error(
            raw(path, json_ct, "{\"content\": ").await.unwrap(),
            400,
            "malformed JSON",
        )
        .await;
        expect_error(raw(path, json_ct, "").await.unwrap(), 400, "JSON").await;
        expect_error(
            raw(path, json_ct, "{}").await.unwrap(),
            400,
            "content is required",
        )
        .await;
        expect_error(
            raw(path, json_ct, "{\"content\": null}").await.unwrap(),
            400,
            "content is required",
        )
        .await;
        expect_error(
            raw(path, json_ct, "{\"content\": \"\"}").await.unwrap(),
            400,
            "must not be empty",
        )
        .await;
        expect_error(
            raw(path, json_ct, "{\"content\": 42}").await.unwrap(),
            400,
            "must be a string",
        )
        .await;
        expect_error(
            raw(path, json_ct, "{\"content\": [\"a\"]}").await.unwrap(),
            400,
            "must be a string",
        )
        .await;
        // PostgreSQL text cannot hold NUL: refused at the door, not in the queue.
        expect_error(
            raw(path, json_ct, "{\"content\": \"a\\u0000b\"}")
                .await
                .unwrap(),
            400,
            "NUL",
        )
        .await;
        expect_error(
            raw(path, "text/plain", "{\"content\": \"x\"}")
                .await
                .unwrap(),
            415,
            "application/json",
        )
        .await;
        let big = json!({"content": "x".repeat(2000)});
        let res = producer.post_json(path, &big).await;
        expect_error(res, 413, "larger than 1024 bytes").await;
    }
    expect_error(
        raw("/messages", json_ct, "[1, 2]").await.unwrap(),
        400,
        "JSON object",
    )
    .await;
    let res = producer
        .post_with_key("/messages", &"x".repeat(300), &json!({"content": "x"}))
        .await;
    expect_error(res, 400, "Idempotency-Key").await;

    // The batch endpoint validates every item before publishing any.
    let batch = |body: serde_json::Value| {
        producer
            .request(Method::POST, "/messages/batch")
            .json(&body)
            .send()
    };
    expect_error(
        batch(json!({"content": "x"})).await.unwrap(),
        400,
        "JSON array",
    )
    .await;
    expect_error(batch(json!([])).await.unwrap(), 400, "must not be empty").await;
    expect_error(
        batch(json!([{"content": "ok"}, {"content": "ok"}, {"content": ""}]))
            .await
            .unwrap(),
        400,
        "item 2: content must not be empty",
    )
    .await;
    expect_error(
        batch(json!([{"content": "ok"}, "bare"])).await.unwrap(),
        400,
        "item 1",
    )
    .await;
    let too_many: Vec<_> = (0..1001).map(|_| json!({"content": "x"})).collect();
    expect_error(batch(json!(too_many)).await.unwrap(), 400, "at most 1000").await;
    expect_error(
        producer.get("/messages/batch").await,
        405,
        "method not allowed",
    )
    .await;

    expect_error(producer.get("/nowhere").await, 404, "no route").await;
    expect_error(
        send(producer.request(Method::DELETE, "/messages")).await,
        405,
        "method not allowed",
    )
    .await;
    expect_error(
        send(producer.request(Method::PUT, "/add_message")).await,
        405,
        "method not allowed",
    )
    .await;
    expect_error(
        send(producer.request(Method::POST, "/healthz")).await,
        405,
        "method not allowed",
    )
    .await;
    expect_error(producer.get("/messages?limit=0").await, 400, "limit").await;
    expect_error(producer.get("/messages?limit=1001").await, 400, "limit").await;
    expect_error(producer.get("/messages?limit=ten").await, 400, "limit").await;
    expect_error(
        producer.get("/messages?cursor=garbage").await,
        400,
        "cursor",
    )
    .await;
    expect_error(
        producer.get("/messages/not-a-uuid").await,
        400,
        "invalid path",
    )
    .await;
    let missing = producer
        .get(&format!("/messages/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["status"],
        "not_found"
    );

    // None of the above was published.
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);
    // And the producer still works.
    let ok = producer
        .post_json("/messages", &json!({"content": "fine"}))
        .await;
    assert_eq!(ok.status(), 202);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 1);
    producer.stop().await;
}
