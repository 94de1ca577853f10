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

/// What a page on `attacker.example` sends once its name points at
/// 127.0.0.1 (DNS rebinding): the browser's `Host` is its own name.
const ATTACKER: &str = "attacker.example";

async fn send_as(
    producer: &Target<'_>,
    host: &str,
    method: &Method,
    path: &str,
) -> reqwest::Response {
    producer
        .client
        .request(method.clone(), format!("{}{path}", producer.base))
        .header("Host", host)
        .send()
        .await
        .unwrap()
}

async fn assert_local_only(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), 403, "{what}");
    let body: Value = res.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("API_TOKEN"), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_requests_to_a_loopback_name_reach_the_api() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let target = Target {
        base: &producer.base,
        client: &producer.client,
    };
    let port = producer.base.rsplit(':').next().unwrap().to_owned();
    let attacker = format!("{ATTACKER}:{port}");

    // Every route of the table, as the rebound page would call it.
    for route in &entries() {
        for method in &route.methods {
            let method: Method = method.as_str().parse().unwrap();
            let what = format!("{method} {} ({:?})", route.path, route.access);
            let res = send_as(&target, &attacker, &method, &concrete(route.path)).await;
            match route.access {
                Access::Api => assert_local_only(res, &what).await,
                // The probes, /metrics and the dashboard's page hold no data.
                Access::Public => assert!(res.status().as_u16() < 400, "{what}: {}", res.status()),
                // No ADMIN_TOKEN: the tools do not exist, whoever asks.
                Access::Admin => assert_eq!(res.status(), 404, "{what}"),
            }
        }
    }
    // Paths no route has, and other methods of an API route, too.
    let res = send_as(&target, &attacker, &Method::GET, "/nowhere").await;
    assert_local_only(res, "GET /nowhere").await;
    let res = send_as(&target, &attacker, &Method::DELETE, "/messages").await;
    assert_local_only(res, "DELETE /messages").await;
    // Nothing refused was published.
    let res = producer
        .request(Method::POST, "/messages")
        .header("Host", &attacker)
        .json(&serde_json::json!({"content": "from a rebound page"}))
        .send()
        .await
        .unwrap();
    assert_local_only(res, "POST /messages").await;
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);

    // Loopback names, with any port or none, in any case.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("LocalHost:{port}"),
        format!("localhost.:{port}"),
    ] {
        let res = send_as(&target, &host, &Method::GET, "/messages").await;
        assert_eq!(res.status(), 200, "Host: {host}");
    }
    // Names that only look local.
    for host in [
        format!("localhost.{ATTACKER}:{port}"),
        format!("127.0.0.1.{ATTACKER}"),
        format!("{ATTACKER}.localhost:{port}"),
        "127.0.0.1:80@attacker.example".to_owned(),
        "0.0.0.0".to_owned(),
        "[::ffff:127.0.0.1]".to_owned(),
    ] {
        let res = send_as(&target, &host, &Method::GET, "/messages").await;
        assert_local_only(res, &format!("Host: {host}")).await;
    }
    // No Host at all (HTTP/1.0): nothing says where it was meant to go.
    let addr = producer.base.trim_start_matches("http://").to_owned();
    let answer = e2e::raw::exchange(
        &addr,
        b"GET /messages HTTP/1.0\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 403"), "{answer}");
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_anonymous_serves_any_host_and_a_token_decides_whatever_the_host() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let open = spawn_producer(&db, &broker, &[("ALLOW_ANONYMOUS", "true")]).await;
    let target = Target {
        base: &open.base,
        client: &open.client,
    };
    let res = send_as(&target, ATTACKER, &Method::GET, "/messages").await;
    assert_eq!(
        res.status(),
        200,
        "ALLOW_ANONYMOUS=true lifts the rule on purpose"
    );
    open.stop().await;

    let guarded = spawn_producer(&db, &broker, &[("API_TOKEN", API)]).await;
    let target = Target {
        base: &guarded.base,
        client: &guarded.client,
    };
    let res = send_as(&target, ATTACKER, &Method::GET, "/messages").await;
    assert_refused(res, "another host without the token").await;
    let res = guarded
        .request(Method::GET, "/messages")
        .header("Host", ATTACKER)
        .bearer_auth(API)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "with the token, any host");
    guarded.stop().await;
}
