//! Access fails closed: it is declared per route in the producer's route
//! table, and this walks that table (not a list of its own), so a route
//! added anywhere, under any path, is checked. With both tokens set, every
//! route answers 401 without the token its declared access needs; a path
//! no route has is closed like an API route. And the route table and the
//! OpenAPI document list the same operations.

use std::collections::BTreeSet;

use e2e::{spawn_producer, TestBroker, TestDb};
use producer::http::access::Access;
use producer::routes::{entries, UNKNOWN_PATHS};
use reqwest::Method;
use serde_json::Value;

const API: &str = "api-t0ken";
const ADMIN: &str = "adm1n-t0ken";

/// A producer as this test talks to it: its base URL and a client.
struct Target<'a> {
    base: &'a str,
    client: &'a reqwest::Client,
}

async fn send(
    producer: &Target<'_>,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let req = producer
        .client
        .request(method.clone(), format!("{}{path}", producer.base));
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

/// `path` with a fresh id in its `{id}` segment.
fn concrete(path: &str) -> String {
    path.replace("{id}", &uuid::Uuid::new_v4().to_string())
}

async fn assert_refused(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), 401, "{what}");
    assert_eq!(res.headers()["www-authenticate"], "Bearer", "{what}");
    let body: Value = res.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("bearer token"), "{what}: {body}");
    assert!(!error.contains(API) && !error.contains(ADMIN), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_without_the_token_its_access_needs() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer =
        spawn_producer(&db, &broker, &[("API_TOKEN", API), ("ADMIN_TOKEN", ADMIN)]).await;
    let target = Target {
        base: &producer.base,
        client: &producer.client,
    };

    let routes = entries();
    assert!(routes.len() > 20, "the whole table: {routes:?}");
    let mut checked = 0;
    for route in &routes {
        for method in &route.methods {
            // actix and reqwest use different versions of `http`.
            let method: Method = method.as_str().parse().unwrap();
            let method = &method;
            let what = format!("{method} {} ({:?})", route.path, route.access);
            let path = concrete(route.path);
            let (right, wrong): (Option<&str>, &[Option<&str>]) = match route.access {
                Access::Public => (None, &[]),
                // Another route's token does not stand in for this one's.
                Access::Api => (Some(API), &[None, Some("wrong"), Some(ADMIN)]),
                Access::Admin => (Some(ADMIN), &[None, Some("wrong"), Some(API)]),
            };
            for token in wrong {
                let res = send(&target, method, &path, *token).await;
                assert_refused(res, &format!("{what} with {token:?}")).await;
            }
            // With the token it needs, the guard lets it through (whatever
            // the handler then makes of an empty request).
            let res = send(&target, method, &path, right).await;
            assert_ne!(res.status(), 401, "{what} with its token");
            checked += 1;
        }
    }
    assert!(checked >= routes.len());

    // Paths no route has are closed like API routes, also under the admin
    // tools' prefixes and beside the public ones.
    assert_eq!(UNKNOWN_PATHS, Access::Api);
    for path in [
        "/nowhere",
        "/webhooks/anything",
        "/webhooks/failed/other",
        "/dead-letters/x/y/z",
        "/healthz/x",
        "/dashboard/api/nothing",
    ] {
        for token in [None, Some("wrong"), Some(ADMIN)] {
            let res = send(&target, &Method::GET, path, token).await;
            assert_refused(res, &format!("GET {path} with {token:?}")).await;
        }
        let res = send(&target, &Method::GET, path, Some(API)).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with("no route"));
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_and_the_openapi_document_list_the_same_operations() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let doc: Value = producer.get("/openapi.json").await.json().await.unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = entries()
        .iter()
        .filter(|route| route.documented)
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(|m| (m.to_string(), route.path.to_owned()))
        })
        .collect();
    assert_eq!(
        registered.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "registered but not documented"
    );
    assert_eq!(
        documented.difference(&registered).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not registered"
    );
    // What the document leaves out is the dashboard's assets and redirect.
    let undocumented: Vec<&str> = entries()
        .iter()
        .filter(|route| !route.documented)
        .map(|route| route.path)
        .collect();
    assert_eq!(
        undocumented,
        ["/dashboard/", "/dashboard/app.js", "/dashboard/app.css"]
    );
    producer.stop().await;
}
