//! The settings the services get in a test (the test's own database and
//! topology, free ports), and starting consumers in-process. The producer
//! is started by `app`, where its requests are.

use std::sync::Arc;

use consumer::stats::Stats;
use shared::Env;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{amqp_url, TestBroker};
use crate::database::TestDb;
use crate::exposition::Exposition;

pub(crate) fn env(db: &TestDb, broker: &TestBroker, extra: &[(&str, &str)]) -> Env {
    Env::from_pairs(env_pairs(db, broker, extra))
}

/// The variables of [`env`], for a process of its own (`process`).
pub(crate) fn env_pairs(
    db: &TestDb,
    broker: &TestBroker,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = vec![
        ("AMQP_URL".into(), amqp_url()),
        ("DATABASE_URL".into(), db.url.clone()),
        ("TOPOLOGY_PREFIX".into(), broker.prefix.clone()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        // A free port each, so consumers in parallel tests never collide.
        ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("HTTP_WORKERS".into(), "1".into()),
        // The kinds the test's topology was declared with.
        (
            "KINDS".into(),
            broker
                .topology
                .kinds
                .all()
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "KIND_SHARDS".into(),
            broker
                .topology
                .kinds
                .all()
                .iter()
                .map(|k| format!("{k}:{}", broker.topology.kinds.shards(k)))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("DB_POOL_SIZE".into(), "3".into()),
    ];
    for (k, v) in extra {
        pairs.retain(|(key, _)| key != k);
        pairs.push(((*k).into(), (*v).into()));
    }
    pairs
}

/// A running consumer.
pub struct TestConsumer {
    /// Its counters.
    pub stats: Arc<Stats>,
    /// `http://127.0.0.1:<port>` of its metrics and health listener.
    pub metrics_base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Start a consumer; `extra` overrides settings (e.g. `("BATCH_SIZE", "10")`).
pub async fn spawn_consumer(
    db: &TestDb,
    broker: &TestBroker,
    extra: &[(&str, &str)],
) -> TestConsumer {
    init_logging();
    let settings = consumer::Settings::from_env(&env(db, broker, extra)).unwrap();
    broker.track_retry_delays(&settings.topology().retry_delays);
    let app = consumer::Application::build(settings).await.unwrap();
    let stats = app.stats();
    let metrics_base = format!("http://127.0.0.1:{}", app.metrics_port());
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(app.run(rx));
    TestConsumer {
        stats,
        metrics_base,
        client: reqwest::Client::new(),
        shutdown,
        task,
    }
}

impl TestConsumer {
    /// `GET path` on the metrics and health listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.metrics_base))
            .send()
            .await
            .unwrap()
    }

    /// `GET /metrics`, checked and parsed.
    pub async fn metrics(&self) -> Exposition {
        scrape(self.get("/metrics").await).await
    }

    /// Request a graceful shutdown (as SIGTERM does) and wait for it to finish.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        (&mut self.task).await.unwrap();
    }
}

impl Drop for TestConsumer {
    /// A consumer a test did not stop must not outlive it: left running, it
    /// would see its queues deleted by the broker clean-up and declare them
    /// again.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

/// Check a `/metrics` answer (200, Prometheus text format) and parse it.
pub(crate) async fn scrape(res: reqwest::Response) -> Exposition {
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    Exposition::parse(&res.text().await.unwrap())
}

/// Start a logger once for the whole test binary (quiet unless RUST_LOG is set).
pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .is_test(true)
        .try_init();
}
