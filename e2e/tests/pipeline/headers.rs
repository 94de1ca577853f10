//! Security headers on every answer (issue 16 #5): `X-Content-Type-Options:
//! nosniff` on each, whatever the route, the status or who refused it
//! (the access guard, an extractor, the 404 and 405 answers), so no
//! browser reads an error's JSON as HTML; and `/docs`, the one page besides
//! the dashboard, under a Content-Security-Policy that allows nothing from
//! elsewhere and no inline code but its own.

use e2e::{spawn_producer, TestBroker, TestDb};
use producer::routes::entries;
use reqwest::Method;

const API: &str = "api-t0ken";
const ADMIN: &str = "adm1n-t0ken";

fn assert_nosniff(res: &reqwest::Response, what: &str) {
    assert_eq!(
        res.headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}: {}",
        res.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_nosniff_and_docs_has_a_policy() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer =
        spawn_producer(&db, &broker, &[("API_TOKEN", API), ("ADMIN_TOKEN", ADMIN)]).await;
    let mut statuses = std::collections::BTreeSet::new();
    for route in &entries() {
        for method in &route.methods {
            let method: Method = method.as_str().parse().unwrap();
            let path = route
                .path
                .replace("{id}", &uuid::Uuid::new_v4().to_string());
            // /events never ends: its head is enough.
            for token in [None, Some(API), Some(ADMIN)] {
                let req = producer.request(method.clone(), &path);
                let req = match token {
                    Some(t) => req.bearer_auth(t),
                    None => req,
                };
                let res = req.send().await.unwrap();
                let what = format!("{method} {path} with {token:?}");
                assert_nosniff(&res, &what);
                statuses.insert(res.status().as_u16());
            }
        }
    }
    // And what extractors, the router and the method check answer.
    let post = |path: &str| producer.request(Method::POST, path).bearer_auth(API);
    let answers = [
        post("/messages")
            .json(&serde_json::json!({"content": "x"}))
            .send()
            .await
            .unwrap(),
        producer.get("/nowhere").await,
        producer.with_token(Method::GET, "/nowhere", API).await,
        producer.with_token(Method::PUT, "/messages", API).await,
        post("/messages")
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
        post("/messages")
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap(),
        post("/messages")
            .header("content-type", "application/json")
            .body(vec![b' '; 70_000])
            .send()
            .await
            .unwrap(),
        producer
            .with_token(Method::GET, "/messages/not-a-uuid", API)
            .await,
        producer
            .with_token(Method::GET, "/messages?limit=x", API)
            .await,
    ];
    for res in &answers {
        assert_nosniff(res, &format!("{}", res.url()));
        statuses.insert(res.status().as_u16());
    }
    for status in [200, 202, 400, 401, 404, 405, 413, 415] {
        assert!(
            statuses.contains(&status),
            "{status} was checked: {statuses:?}"
        );
    }

    let docs = producer.with_token(Method::GET, "/docs", API).await;
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    producer.stop().await;
}
