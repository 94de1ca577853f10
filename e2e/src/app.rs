//! `TestApp`: a producer started in-process for one test, and the requests
//! the tests make of it, written once: a message posted (with or without an
//! `Idempotency-Key`), a message or any JSON read back, a wait until a
//! message reaches a state, a call with a token or as the admin.
//!
//! The helpers only send and read; what a test expects of the answers stays
//! in the test.

use std::fmt::Display;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use uuid::Uuid;

use crate::broker::TestBroker;
use crate::database::TestDb;
use crate::exposition::Exposition;
use crate::services::{env, init_logging, scrape};
use crate::wait::wait_for;

/// A running producer and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The `ADMIN_TOKEN` it was started with, for [`Self::admin`].
    admin_token: Option<String>,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Start a producer; `extra` overrides settings (e.g. `("MAX_BODY_BYTES", "100")`).
pub async fn spawn_producer(db: &TestDb, broker: &TestBroker, extra: &[(&str, &str)]) -> TestApp {
    init_logging();
    let settings = producer::Settings::from_env(&env(db, broker, extra)).unwrap();
    let app = producer::Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    let admin_token = extra
        .iter()
        .find(|(k, _)| *k == "ADMIN_TOKEN")
        .map(|(_, v)| (*v).to_owned());
    TestApp {
        base,
        client: reqwest::Client::new(),
        admin_token,
        handle,
        task,
    }
}

impl TestApp {
    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, to add headers, a token or a body to.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        send(self.request(Method::GET, path)).await
    }

    /// `GET path`, the body as JSON (whatever the status).
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// `GET path`: the status and the body as JSON.
    pub async fn get_status_json(&self, path: &str) -> (u16, Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        send(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`.
    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> Response {
        send(
            self.request(Method::POST, path)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    /// `POST /messages` with `body`, which must be accepted (202); its id.
    pub async fn post_message(&self, body: &Value) -> Uuid {
        let res = self.post_json("/messages", body).await;
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Poll `GET /messages/{id}` until its body satisfies `done`; that body.
    pub async fn wait_for_message(
        &self,
        id: impl Display,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/messages/{id}");
        wait_for(what, timeout, || async {
            let body = self.get_json(&path).await;
            done(&body).then_some(body)
        })
        .await
    }

    /// `method path` (no body) with `token` as the bearer token.
    pub async fn with_token(&self, method: Method, path: &str, token: &str) -> Response {
        send(self.request(method, path).bearer_auth(token)).await
    }

    /// `method path` (no body) with the `ADMIN_TOKEN` this producer was
    /// started with.
    pub async fn admin(&self, method: Method, path: &str) -> Response {
        let token = self
            .admin_token
            .clone()
            .expect("admin calls need a producer started with ADMIN_TOKEN");
        self.with_token(method, path, &token).await
    }

    /// `GET /metrics`, checked and parsed.
    pub async fn metrics(&self) -> Exposition {
        scrape(self.get("/metrics").await).await
    }

    /// Stop gracefully and wait.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Send a request, which must get an answer (any status).
pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}
