//! `API_TOKEN`: everything but the probes and /metrics needs the bearer token.

use e2e::app::send;
use e2e::{spawn_producer, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_guards_every_endpoint_but_probes_and_metrics() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("API_TOKEN", "s3cret-token")]).await;
    let body = json!({"content": "x"});
    let post = |path: &str| producer.request(Method::POST, path);

    let refused = [
        producer.post_json("/messages", &body).await,
        send(post("/messages").bearer_auth("wrong").json(&body)).await,
        send(
            post("/messages")
                .header("Authorization", "Basic s3cret-token")
                .json(&body),
        )
        .await,
        producer.post_json("/add_message", &body).await,
        producer.post_json("/messages/batch", &json!([body])).await,
        producer.get("/messages").await,
        producer.get("/events").await,
        producer.get("/openapi.json").await,
        producer
            .get(&format!("/messages/{}", uuid::Uuid::new_v4()))
            .await,
    ];
    for res in refused {
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        let error: Value = res.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains("bearer token"));
        assert!(!error.to_string().contains("s3cret"));
    }
    // Nothing refused was published.
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(producer.get(path).await.status(), 200, "{path}");
    }
    let ok = send(post("/messages").bearer_auth("s3cret-token").json(&body)).await;
    assert_eq!(ok.status(), 202);
    let list = producer
        .with_token(Method::GET, "/messages", "s3cret-token")
        .await;
    assert_eq!(list.status(), 200);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 1);
    producer.stop().await;
}
