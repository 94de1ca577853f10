//! Where the system under test runs, and how faults are done to it: local
//! processes against the machine's services (`scripts/faults.sh`), or a
//! running compose project (`scripts/compose-test.sh`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bench::docker::{docker, Compose};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use shared::Topology;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::args::Args;

/// The services under test.
pub struct System {
    args: Args,
    env: Vec<(String, String)>,
    logs: PathBuf,
    producer: Mutex<Option<Child>>,
    consumers: Mutex<Vec<Child>>,
    spawned: AtomicUsize,
}

impl System {
    fn command(&self, bin: &PathBuf, log: &str) -> anyhow::Result<Command> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(log))?;
        let mut cmd = Command::new(bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        Ok(cmd)
    }

    fn spawn_consumer(&self) -> anyhow::Result<Child> {
        let i = self.spawned.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .command(&self.args.consumer_bin, &format!("consumer{i}.log"))?
            .spawn()?)
    }
}

fn sql_ok(conn: &mut PgConnection, sql: &str) -> anyhow::Result<()> {
    diesel::sql_query(sql).execute(conn)?;
    Ok(())
}

async fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("{program} {args:?} failed: {status}");
    }
    Ok(())
}

async fn wait_rabbit() -> anyhow::Result<()> {
    for _ in 0..120 {
        if sh("rabbitmqctl", &["-q", "await_startup"]).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("RabbitMQ did not come back")
}

fn pg_version() -> anyhow::Result<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    versions.pop().context("no PostgreSQL cluster")
}

/// Where the system under test runs, and how faults are done to it.
pub enum Target {
    /// Local processes against the machine's services (`scripts/faults.sh`).
    Local {
        system: Arc<System>,
        database_url: String,
        /// The webhook receiver (see `e2e::Receiver`), allowed by the services.
        receiver: Arc<e2e::Receiver>,
        /// The services' WEBHOOK_SECRET.
        secret: String,
    },
    /// A running compose project (`scripts/compose-test.sh`).
    Compose(Compose),
}

impl Target {
    /// What each fault is called in the report.
    pub fn fault_names(&self) -> [&'static str; 4] {
        match self {
            Target::Local { .. } => [
                "consumer SIGKILLs",
                "RabbitMQ stop_app/start_app",
                "RabbitMQ SIGKILL + restart",
                "PostgreSQL stopped",
            ],
            Target::Compose(_) => [
                "consumer replicas killed (docker kill -s KILL, then start)",
                "docker compose restart rabbitmq",
                "docker compose kill -s KILL rabbitmq, then start",
                "docker compose stop postgres, then start",
            ],
        }
    }

    /// SIGKILL consumer number `round` (modulo their number) and start it again.
    pub async fn kill_consumer(&self, round: usize) -> anyhow::Result<bool> {
        match self {
            Target::Local { system, .. } => {
                let victim = {
                    let Ok(mut consumers) = system.consumers.lock() else {
                        return Ok(false);
                    };
                    if consumers.is_empty() {
                        return Ok(false);
                    }
                    let i = round % consumers.len();
                    consumers.remove(i)
                };
                let mut victim = victim;
                let _ = victim.start_kill(); // SIGKILL
                let _ = victim.wait().await;
                let child = system.spawn_consumer()?;
                if let Ok(mut consumers) = system.consumers.lock() {
                    consumers.push(child);
                }
                Ok(true)
            }
            Target::Compose(compose) => {
                let ids = compose.containers("consumer").await?;
                let Some(victim) = ids.get(round % ids.len().max(1)) else {
                    return Ok(false);
                };
                docker(&["kill", "-s", "KILL", victim]).await?;
                // A container stopped by `docker kill` counts as stopped by
                // hand: its restart policy leaves it down. Start it, as the
                // restart policy would after a crash.
                docker(&["start", victim]).await?;
                Ok(true)
            }
        }
    }

    /// Stop the broker cleanly and start it again.
    pub async fn restart_rabbit(&self) -> anyhow::Result<()> {
        match self {
            Target::Local { .. } => {
                sh("rabbitmqctl", &["-q", "stop_app"]).await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                sh("rabbitmqctl", &["-q", "start_app"]).await?;
                wait_rabbit().await
            }
            Target::Compose(compose) => {
                compose.run(&["restart", "rabbitmq"]).await?;
                compose.wait_healthy("rabbitmq").await
            }
        }
    }

    /// Kill the broker's VM outright and start it again.
    pub async fn kill_rabbit(&self) -> anyhow::Result<()> {
        match self {
            Target::Local { .. } => {
                sh("pkill", &["-KILL", "-f", "beam.smp"]).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                sh("rabbitmq-server", &["-detached"]).await?;
                wait_rabbit().await
            }
            Target::Compose(compose) => {
                compose.run(&["kill", "-s", "KILL", "rabbitmq"]).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                compose.run(&["start", "rabbitmq"]).await?;
                compose.wait_healthy("rabbitmq").await
            }
        }
    }

    /// Stop PostgreSQL for `down`, then start it again.
    pub async fn stop_postgres(&self, down: Duration) -> anyhow::Result<()> {
        match self {
            Target::Local { .. } => {
                let version = pg_version()?;
                sh(
                    "pg_ctlcluster",
                    &[
                        "--skip-systemctl-redirect",
                        &version,
                        "main",
                        "stop",
                        "-m",
                        "fast",
                    ],
                )
                .await?;
                tokio::time::sleep(down).await;
                sh(
                    "pg_ctlcluster",
                    &["--skip-systemctl-redirect", &version, "main", "start"],
                )
                .await
            }
            Target::Compose(compose) => {
                compose.run(&["stop", "postgres"]).await?;
                tokio::time::sleep(down).await;
                compose.run(&["start", "postgres"]).await?;
                compose.wait_healthy("postgres").await
            }
        }
    }

    /// The stored rows to judge: every row of the run's own database, or
    /// (compose) the rows whose content starts with `prefix`, read page by
    /// page through `GET /messages` as any client would.
    pub async fn stored(
        &self,
        client: &reqwest::Client,
        base: &str,
        prefix: &str,
    ) -> anyhow::Result<Vec<(Uuid, String)>> {
        match self {
            Target::Local { database_url, .. } => {
                let url = database_url.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(Uuid, String)>> {
                    let mut conn = PgConnection::establish(&url)?;
                    let rows: Vec<Row> =
                        diesel::sql_query("SELECT id, content FROM messages").load(&mut conn)?;
                    Ok(rows.into_iter().map(|r| (r.id, r.content)).collect())
                })
                .await?
            }
            Target::Compose(_) => {
                let mut rows = Vec::new();
                let mut next = Some("/messages?limit=1000".to_owned());
                while let Some(path) = next.take() {
                    let response = client.get(format!("{base}{path}")).send().await?;
                    if response.status() != 200 {
                        bail!("GET {path}: {}", response.status());
                    }
                    next = response
                        .headers()
                        .get("link")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|link| {
                            let (url, rel) = link.split_once(';')?;
                            rel.contains("rel=\"next\"").then(|| {
                                url.trim()
                                    .trim_start_matches('<')
                                    .trim_end_matches('>')
                                    .to_owned()
                            })
                        });
                    let page: Vec<serde_json::Value> = response.json().await?;
                    for m in page {
                        let content = m["content"].as_str().unwrap_or_default();
                        if content.starts_with(prefix) {
                            let id = m["id"].as_str().unwrap_or_default().parse()?;
                            rows.push((id, content.to_owned()));
                        }
                    }
                }
                Ok(rows)
            }
        }
    }

    /// Local only (`None` for compose, whose database is not published):
    /// the scheduled messages not delivered yet, and those stored before
    /// their `deliver_at`.
    pub async fn scheduled(&self) -> anyhow::Result<Option<Scheduled>> {
        let Target::Local { database_url, .. } = self else {
            return Ok(None);
        };
        let url = database_url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Scheduled>> {
            let mut conn = PgConnection::establish(&url)?;
            let state = diesel::sql_query(
                "SELECT (SELECT count(*) FROM scheduled_messages
                          WHERE state IN ('scheduled', 'dispatching', 'dispatched')) AS pending,
                        (SELECT count(*) FROM messages m JOIN scheduled_messages s ON s.id = m.id
                          WHERE m.stored_at < s.deliver_at) AS early",
            )
            .get_result::<Scheduled>(&mut conn)?;
            Ok(Some(state))
        })
        .await?
    }

    /// How many rows are stored (0 when they cannot be read): every row of
    /// the run's database, or (compose) the run's rows read page by page.
    pub async fn count(&self, client: &reqwest::Client, base: &str, prefix: &str) -> usize {
        match self {
            Target::Local { database_url, .. } => {
                let url = database_url.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
                    let mut conn = PgConnection::establish(&url)?;
                    let n = diesel::sql_query("SELECT count(*) AS n FROM messages")
                        .get_result::<N>(&mut conn)?
                        .n;
                    Ok(usize::try_from(n)?)
                })
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0)
            }
            Target::Compose(_) => self
                .stored(client, base, prefix)
                .await
                .map(|rows| rows.len())
                .unwrap_or(0),
        }
    }
}

/// The run's system and where to reach it.
pub struct Setup {
    pub target: Arc<Target>,
    /// The topology the services use.
    pub topology: Topology,
    /// The producer's URL.
    pub base: String,
    /// The run's own database (local only): dropped at the end.
    local_db: Option<String>,
}

/// Local: a database and a topology of the run's own, a webhook receiver,
/// the producer and the consumers started. Compose: the project as it runs.
pub async fn set_up(args: &Args, run: &str, logs: &Path) -> anyhow::Result<Setup> {
    match &args.compose_project {
        None => {
            let db = format!("faults_{run}");
            let prefix = format!("faults.{run}.");
            // MAX_ATTEMPTS=3 with a 200 ms base: delay queues of 200 ms and 800 ms.
            let topology = Topology::with_prefix(&prefix)
                .with_retry_delays(&[Duration::from_millis(200), Duration::from_millis(800)]);
            let mut admin = PgConnection::establish(&format!("{}/postgres", args.server_url))?;
            sql_ok(&mut admin, &format!("CREATE DATABASE \"{db}\""))?;
            drop(admin);
            let database_url = format!("{}/{db}", args.server_url);
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let receiver = Arc::new(e2e::Receiver::start().await);
            let secret = format!("faults-{run}");
            let system = start_local(args, logs, &database_url, &prefix, port, &secret)?;
            let target = Target::Local {
                system,
                database_url,
                receiver,
                secret,
            };
            Ok(Setup {
                target: Arc::new(target),
                topology,
                base: format!("http://127.0.0.1:{port}"),
                local_db: Some(db),
            })
        }
        Some(project) => Ok(Setup {
            target: Arc::new(Target::Compose(Compose {
                project: project.clone(),
            })),
            // The stack's own broker: the standard names, no prefix.
            topology: Topology::default(),
            base: args.producer_url.trim_end_matches('/').to_owned(),
            local_db: None,
        }),
    }
}

impl Setup {
    /// Remove the run's own topology and database; a compose stack keeps its own.
    pub async fn tear_down(&self, args: &Args, channel: &lapin::Channel) -> anyhow::Result<()> {
        if let Some(db) = &self.local_db {
            let _ = self.topology.delete(channel).await;
            let mut admin = PgConnection::establish(&format!("{}/postgres", args.server_url))?;
            sql_ok(
                &mut admin,
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            )?;
        }
        Ok(())
    }
}

/// Start the producer and the consumers as local processes.
fn start_local(
    args: &Args,
    logs: &Path,
    database_url: &str,
    prefix: &str,
    port: u16,
    secret: &str,
) -> anyhow::Result<Arc<System>> {
    let env: Vec<(String, String)> = [
        ("AMQP_URL", args.amqp_url.as_str()),
        ("DATABASE_URL", database_url),
        ("TOPOLOGY_PREFIX", prefix),
        ("BIND_ADDR", &format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn,consumer=info,producer=info"),
        ("PUBLISH_TIMEOUT_MS", "3000"),
        ("AMQP_TIMEOUT_MS", "3000"),
        ("DB_TIMEOUT_MS", "1000"),
        ("MAX_ATTEMPTS", "3"),
        ("RETRY_BASE_MS", "200"),
        ("SHUTDOWN_TIMEOUT_MS", "15000"),
        ("STARTUP_TIMEOUT_MS", "120000"),
        ("HTTP_WORKERS", "2"),
        // Several consumers on one host: let each pick a free metrics port.
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("WEBHOOK_SECRET", secret),
        ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
        ("WEBHOOK_RETRY_BASE_MS", "200"),
        ("WEBHOOK_RETRY_MAX_MS", "2000"),
        ("WEBHOOK_TIMEOUT_MS", "3000"),
        ("WEBHOOK_POLL_MS", "200"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let system = Arc::new(System {
        args: args.clone(),
        env,
        logs: logs.to_path_buf(),
        producer: Mutex::new(None),
        consumers: Mutex::new(Vec::new()),
        spawned: AtomicUsize::new(0),
    });
    let producer = system
        .command(&args.producer_bin, "producer.log")?
        .spawn()?;
    *system
        .producer
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))? = Some(producer);
    for _ in 0..args.consumers {
        let child = system.spawn_consumer()?;
        system
            .consumers
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .push(child);
    }
    Ok(system)
}

/// SIGTERM every local consumer, then the producer; how many consumers exited 0.
pub async fn stop_local(system: &System) -> anyhow::Result<usize> {
    let mut graceful = 0;
    let children: Vec<Child> = std::mem::take(
        &mut *system
            .consumers
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?,
    );
    for mut child in children {
        if let Some(pid) = child.id() {
            sh("kill", &["-TERM", &pid.to_string()]).await?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        if status.success() {
            graceful += 1;
        }
    }
    let producer = system
        .producer
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .take();
    if let Some(mut producer) = producer {
        if let Some(pid) = producer.id() {
            sh("kill", &["-TERM", &pid.to_string()]).await?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), producer.wait()).await;
    }
    Ok(graceful)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    content: String,
}

/// Where the scheduled messages stand (see [`Target::scheduled`]).
#[derive(QueryableByName)]
pub struct Scheduled {
    /// Waiting, claimed, or published and not stored yet.
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    /// Stored before their `deliver_at`.
    #[diesel(sql_type = BigInt)]
    pub early: i64,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}
