//! The OpenAPI document describes every route and every status it answers,
//! and every route it describes exists.

use e2e::{spawn_producer, TestBroker, TestDb};
use serde_json::Value;

/// Every operation the producer serves, with every status it can answer.
/// Adding a route or a status without documenting it fails this test.
const OPERATIONS: &[(&str, &str, &[&str])] = &[
    (
        "post",
        "/messages",
        &["202", "400", "401", "408", "413", "415", "422", "503"],
    ),
    ("get", "/messages", &["200", "400", "401", "503"]),
    (
        "get",
        "/messages/{id}",
        &["200", "400", "401", "404", "503"],
    ),
    (
        "post",
        "/messages/batch",
        &["202", "400", "401", "408", "413", "415", "422", "503"],
    ),
    (
        "post",
        "/add_message",
        &["202", "400", "401", "408", "413", "415", "503"],
    ),
    ("get", "/events", &["200", "400", "401"]),
    ("get", "/batches/{id}", &["200", "400", "401", "404", "503"]),
    (
        "get",
        "/webhooks/failed",
        &["200", "400", "401", "404", "503"],
    ),
    (
        "post",
        "/webhooks/failed/resend",
        &["200", "400", "401", "404", "503"],
    ),
    ("get", "/dead-letters", &["200", "400", "401", "404", "503"]),
    (
        "post",
        "/dead-letters/redrive",
        &["200", "400", "401", "404", "503"],
    ),
    (
        "delete",
        "/dead-letters",
        &["200", "400", "401", "404", "503"],
    ),
    ("get", "/healthz", &["200"]),
    ("get", "/readyz", &["200", "503"]),
    ("get", "/metrics", &["200"]),
    ("get", "/openapi.json", &["200"]),
    ("get", "/docs", &["200"]),
    ("get", "/dashboard", &["200"]),
    ("get", "/dashboard/api/access", &["200"]),
    ("get", "/dashboard/api/overview", &["200", "401"]),
    (
        "get",
        "/dashboard/api/messages",
        &["200", "400", "401", "503"],
    ),
    (
        "get",
        "/dashboard/api/messages/{id}",
        &["200", "400", "401", "404", "503"],
    ),
    (
        "get",
        "/dashboard/api/idempotency-key",
        &["200", "400", "401"],
    ),
    (
        "post",
        "/dead-letters/{id}/redrive",
        &["200", "400", "401", "404", "503"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // With ADMIN_TOKEN set, so that the dead-letter routes exist (401, not 404).
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm")]).await;

    let res = producer.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented += 1;
            let expected = OPERATIONS
                .iter()
                .find(|(m, p, _)| m == method && p == path)
                .unwrap_or_else(|| {
                    panic!("{method} {path} is documented but not in the test's list")
                });
            let statuses: Vec<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want: Vec<&str> = expected.2.to_vec();
            want.sort();
            let mut got = statuses.clone();
            got.sort();
            assert_eq!(got, want, "{method} {path}");

            // The documented route exists: it is not the app-wide "no route" 404.
            let url = format!(
                "{}{}",
                producer.base,
                path.replace("{id}", &uuid::Uuid::new_v4().to_string())
            );
            let req = match method.as_str() {
                "get" => producer.client.get(&url),
                "post" => producer.client.post(&url),
                "delete" => producer.client.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            if path == "/events" {
                continue; // a stream: checked by its own test
            }
            let res = req.send().await.unwrap();
            if res.status() == 404 {
                let body: Value = res.json().await.unwrap_or_default();
                let error = body["error"].as_str().unwrap_or_default();
                assert!(!error.starts_with("no route"), "{method} {path}: {error}");
            }
        }
    }
    assert_eq!(
        documented,
        OPERATIONS.len(),
        "every operation is documented"
    );

    let page = producer.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("openapi.json"));
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_says_which_methods_are_allowed() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm")]).await;
    let doc: Value = producer.get("/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        let url = format!(
            "{}{}",
            producer.base,
            path.replace("{id}", &uuid::Uuid::new_v4().to_string())
        );
        for method in ["PATCH", "PUT", "TRACE"] {
            let res = producer
                .client
                .request(method.parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 405, "{method} {path}");
            let allow = res
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                .to_str()
                .unwrap()
                .to_owned();
            let mut allowed: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
            allowed.sort();
            assert_eq!(allowed, documented, "{method} {path}: Allow: {allow}");
            let body: Value = res.json().await.unwrap();
            assert!(body["error"].is_string(), "{method} {path}");
        }
    }
    producer.stop().await;
}
