//! The OpenAPI document describes every route and every status it answers,
//! and every route it describes exists.

use e2e::app::send;
use e2e::{spawn_producer, TestBroker, TestDb};
use reqwest::Method;
use serde_json::Value;

/// Every operation the producer serves, with every status it can answer.
/// Adding a route or a status without documenting it fails this test.
const OPERATIONS: &[(&str, &str, &[&str])] = &[
    (
        "post",
        "/messages",
        &[
            "202", "400", "401", "403", "408", "413", "415", "422", "503",
        ],
    ),
    ("get", "/messages", &["200", "400", "401", "403", "503"]),
    (
        "get",
        "/messages/{id}",
        &["200", "400", "401", "403", "404", "503"],
    ),
    (
        "delete",
        "/messages/{id}",
        &["200", "400", "401", "403", "404", "409", "503"],
    ),
    (
        "post",
        "/messages/batch",
        &[
            "202", "400", "401", "403", "408", "413", "415", "422", "503",
        ],
    ),
    (
        "post",
        "/add_message",
        &["202", "400", "401", "403", "408", "413", "415", "503"],
    ),
    ("get", "/events", &["200", "400", "401", "403", "503"]),
    (
        "get",
        "/batches/{id}",
        &["200", "400", "401", "403", "404", "503"],
    ),
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
    (
        "get",
        "/webhooks/signing-key",
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
    ("get", "/openapi.json", &["200", "403"]),
    ("get", "/docs", &["200", "403"]),
    ("get", "/dashboard", &["200"]),
    ("get", "/dashboard/api/access", &["200"]),
    ("get", "/dashboard/api/overview", &["200", "401", "403"]),
    (
        "get",
        "/dashboard/api/messages",
        &["200", "400", "401", "403", "503"],
    ),
    (
        "get",
        "/dashboard/api/messages/{id}",
        &["200", "400", "401", "403", "404", "503"],
    ),
    (
        "get",
        "/dashboard/api/idempotency-key",
        // 503: it reads the key's binding (keys expire, issue 18).
        &["200", "400", "401", "403", "503"],
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
            let path_with_id = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
            let method_of = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "delete" => Method::DELETE,
                other => panic!("unexpected method {other}"),
            };
            if path == "/events" {
                continue; // a stream: checked by its own test
            }
            let res = send(producer.request(method_of, &path_with_id)).await;
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
    let doc = producer.get_json("/openapi.json").await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        let path_with_id = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for method in ["PATCH", "PUT", "TRACE"] {
            let res = send(producer.request(method.parse().unwrap(), &path_with_id)).await;
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

/// `$ref` → the schema it names, in `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn parameter<'a>(doc: &'a Value, method: &str, path: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))
}

/// The document states the constraints the handlers enforce, and the
/// handlers enforce exactly those: each documented bound is accepted and
/// one past it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_constraints_are_the_enforced_ones() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm")]).await;
    let doc = producer.get_json("/openapi.json").await;

    // A stored row and a completed batch, so that GET /messages/{id}?wait=30
    // and GET /batches/{id}?wait=30 answer at once.
    let stored = uuid::Uuid::new_v4();
    for sql in [
        format!("INSERT INTO messages (id, content, created_at) VALUES ('{stored}', 'x', now())"),
        format!(
            "INSERT INTO batches (id, total, created_at, completed_at, status) \
             VALUES ('{stored}', 1, now(), now(), 'completed')"
        ),
    ] {
        db.execute(&sql);
    }

    let bounded = [
        ("get", "/messages", "limit", 1, 1000),
        ("get", "/messages/{id}", "wait", 0, 30),
        ("get", "/dead-letters", "limit", 1, 1000),
        ("post", "/dead-letters/redrive", "limit", 1, 1000),
        ("get", "/batches/{id}", "wait", 0, 30),
        ("get", "/webhooks/failed", "limit", 1, 1000),
        ("post", "/webhooks/failed/resend", "limit", 1, 1000),
    ];
    for (method, path, name, min, max) in bounded {
        let schema = &parameter(&doc, method, path, name)["schema"];
        assert_eq!(schema["minimum"], min, "{method} {path} {name}: {schema}");
        assert_eq!(schema["maximum"], max, "{method} {path} {name}: {schema}");
        let query = |n: i64| format!("{}?{name}={n}", path.replace("{id}", &stored.to_string()));
        for (n, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
            let method_of = match method {
                "get" => Method::GET,
                _ => Method::POST,
            };
            let status = producer
                .with_token(method_of, &query(n), "adm")
                .await
                .status();
            assert_eq!(
                status != 400,
                ok,
                "{method} {path}?{name}={n} answered {status}"
            );
        }
    }
    let id = parameter(&doc, "get", "/messages/{id}", "id");
    assert_eq!(id["schema"]["format"], "uuid");
    let confirm = parameter(&doc, "delete", "/dead-letters", "confirm");
    assert_eq!(confirm["required"], true);
    assert_eq!(confirm["schema"]["enum"], serde_json::json!(["true"]));
    let ids = parameter(&doc, "get", "/events", "ids");
    assert_eq!(ids["schema"]["items"]["format"], "uuid");

    // Request bodies are schemas, not strings.
    for path in ["/messages", "/add_message"] {
        let body =
            &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let body = resolve(&doc, body);
        assert_eq!(body["type"], "object", "{path}: {body}");
        assert_eq!(body["required"], serde_json::json!(["content"]), "{path}");
        assert_eq!(body["properties"]["content"]["minLength"], 1, "{path}");
        assert!(
            body["properties"]["content"]["pattern"].is_string(),
            "{path}: NUL"
        );
    }
    // callback_url: what JSON Schema can say of it, the same in both bodies
    // that take one (null is none); the tutorial's body has none.
    let message = resolve(
        &doc,
        &doc["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"],
    );
    let add = resolve(
        &doc,
        &doc["paths"]["/add_message"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    assert!(add["properties"]["callback_url"].is_null(), "{add}");
    let batch = resolve(
        &doc,
        &doc["paths"]["/messages/batch"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    // Either the bare array or {"messages": [...], "callback_url"}: the
    // array has the same bounds in both forms.
    let forms = batch["oneOf"].as_array().expect("oneOf the two body forms");
    assert_eq!(forms.len(), 2, "{batch}");
    for array in [&forms[0], &forms[1]["properties"]["messages"]] {
        assert_eq!(
            (&array["type"], &array["minItems"], &array["maxItems"]),
            (
                &serde_json::json!("array"),
                &serde_json::json!(1),
                &serde_json::json!(1000)
            ),
            "{batch}"
        );
    }

    for url in [
        &message["properties"]["callback_url"],
        &forms[1]["properties"]["callback_url"],
    ] {
        assert_eq!(url["type"], serde_json::json!(["string", "null"]), "{url}");
        assert_eq!(
            (&url["minLength"], &url["maxLength"]),
            (&serde_json::json!(1), &serde_json::json!(2048)),
            "{url}"
        );
        // The one pattern, which refuses an empty host (issue 15).
        assert_eq!(
            url["pattern"],
            producer::schemas::CALLBACK_URL_PATTERN,
            "{url}"
        );
    }
    // The pattern is the handler's rule: URL parsing alone would take these.
    for url in ["HTTPS://example.com/", " https://example.com/"] {
        let status = producer
            .post_json(
                "/messages",
                &serde_json::json!({"content": "x", "callback_url": url}),
            )
            .await
            .status();
        assert_eq!(status, 400, "{url:?}");
    }

    // Idempotency-Key: 1-255 visible ASCII, no spaces, on both POSTs.
    for path in ["/messages", "/messages/batch"] {
        let key = &parameter(&doc, "post", path, "Idempotency-Key")["schema"];
        assert_eq!(
            (&key["minLength"], &key["maxLength"]),
            (&serde_json::json!(1), &serde_json::json!(255)),
            "{path}"
        );
        assert_eq!(key["pattern"], "^[!-~]+$", "{path}");
    }
    for (key, ok) in [
        ("k".repeat(255), true),
        ("k".repeat(256), false),
        ("a b".into(), false),
    ] {
        let status = producer
            .post_with_key("/messages", &key, &serde_json::json!({"content": "x"}))
            .await
            .status();
        assert_eq!(status == 202, ok, "key of {} chars: {status}", key.len());
    }
    producer.stop().await;
}
