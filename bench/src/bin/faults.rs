//! `faults`: the fault-injection test. It drives the real producer and
//! consumer binaries against the local RabbitMQ and PostgreSQL while
//! breaking things, then proves the promise: every message that got a 202 is
//! stored exactly once with the payload that was sent, and only the poison
//! ends in `messages.dead`.
//!
//! While N messages are sent over HTTP (a client that retries 503s and
//! connection errors with the same Idempotency-Key), plus a stream of
//! malformed requests and a few poison messages published straight to the
//! exchange, it:
//! * SIGKILLs a random consumer every few seconds and restarts it;
//! * stops and starts the RabbitMQ app (`rabbitmqctl stop_app/start_app`);
//! * kills the RabbitMQ VM hard (SIGKILL) and starts it again;
//! * stops PostgreSQL (`pg_ctlcluster … stop -m fast`) for a while;
//! * at the end stops every consumer with SIGTERM.
//!
//! Every `--callback-every`-th message carries a `callback_url` to a
//! receiver this tool runs on 127.0.0.1, which is itself down for a few
//! seconds mid-run: each of those messages must get its signed
//! `message.stored` notification (at least once), whatever was killed.
//!
//! It restarts the machine's shared services: run it alone (see
//! `scripts/faults.sh`), never next to other tests.
//!
//! With `--compose-project P` it tests a running `docker compose` project
//! instead (see `scripts/compose-test.sh`): the same client and checks, sent
//! to the producer's published port (`--producer-url`), with the faults done
//! to containers: `docker kill -s KILL` on a consumer replica (then `docker
//! start`), `docker compose restart rabbitmq`, `docker compose kill -s KILL
//! rabbitmq` then `start`, `docker compose stop postgres` for a while then
//! `start`. The rows are read through `GET /messages` (PostgreSQL is not
//! published), keeping only this run's. The graceful stop of the consumers
//! is left to the script (`docker compose stop`). `--faults none` sends and
//! checks without breaking anything. No callbacks there: the containers
//! cannot reach a receiver on the host's 127.0.0.1.

#![allow(clippy::print_stdout)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection as Amqp, ConnectionProperties};
use shared::Topology;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Settings of one run (flags `--name value`).
#[derive(Clone)]
struct Args {
    n: usize,
    duration: Duration,
    consumers: usize,
    poison: usize,
    pg_down: Duration,
    callback_every: usize,
    producer_bin: PathBuf,
    consumer_bin: PathBuf,
    server_url: String,
    amqp_url: String,
    /// `--compose-project`: test this running compose project, not local processes.
    compose_project: Option<String>,
    /// `--producer-url` (compose only): the producer's published port.
    producer_url: String,
    /// `--faults all|none`: `none` sends and checks without injecting faults.
    inject_faults: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .with_context(|| format!("unexpected {flag:?}"))?;
        map.insert(
            name.into(),
            it.next()
                .with_context(|| format!("--{name} needs a value"))?,
        );
    }
    let get = |k: &str, d: &str| map.get(k).cloned().unwrap_or_else(|| d.to_owned());
    let num = |k: &str, d: u64| -> anyhow::Result<u64> {
        get(k, &d.to_string())
            .parse()
            .with_context(|| format!("--{k} must be a number"))
    };
    Ok(Args {
        n: num("n", 100_000)? as usize,
        duration: Duration::from_secs(num("duration-secs", 60)?),
        consumers: num("consumers", 3)? as usize,
        poison: num("poison", 5)? as usize,
        pg_down: Duration::from_secs(num("pg-down-secs", 20)?),
        callback_every: num("callback-every", 10)?.max(1) as usize,
        producer_bin: get("producer-bin", "target/release/producer").into(),
        consumer_bin: get("consumer-bin", "target/release/consumer").into(),
        server_url: get("server-url", "postgres://root@127.0.0.1:5432"),
        amqp_url: get("amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        compose_project: map.get("compose-project").cloned(),
        producer_url: get("producer-url", "http://127.0.0.1:8080"),
        inject_faults: match get("faults", "all").as_str() {
            "all" => true,
            "none" => false,
            other => bail!("--faults is all or none, not {other:?}"),
        },
    })
}

/// Counters printed in the final table.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    accepted: AtomicUsize,
    retried: AtomicUsize,
    client_errors: AtomicUsize,
    unexpected: AtomicUsize,
    consumer_kills: AtomicUsize,
    rabbit_app_restarts: AtomicUsize,
    rabbit_hard_kills: AtomicUsize,
    pg_restarts: AtomicUsize,
    /// Faults that started after the last message was accepted: they broke
    /// nothing in flight, so they prove nothing.
    faults_after_load: AtomicUsize,
}

/// The services under test.
struct System {
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
enum Target {
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

/// A running `docker compose` project, driven through the docker CLI from
/// the folder of its compose file (the caller's working directory), with the
/// caller's environment (the published-port variables).
struct Compose {
    project: String,
}

impl Compose {
    /// `docker compose -p <project> <args>`, which must succeed.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["compose", "-p", self.project.as_str()];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// The running consumer replicas' container ids.
    async fn consumers(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .run(&["ps", "-q", "consumer"])
            .await?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Wait until `service`'s container reports healthy.
    async fn wait_healthy(&self, service: &str) -> anyhow::Result<()> {
        for _ in 0..240 {
            if let Ok(health) = self.run(&["ps", "--format", "{{.Health}}", service]).await {
                if health.trim() == "healthy" {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("{service} did not become healthy within 120 s")
    }
}

/// `docker <args>`, which must succeed; its standard output.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Target {
    /// What each fault is called in the report.
    fn fault_names(&self) -> [&'static str; 4] {
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
    async fn kill_consumer(&self, round: usize) -> anyhow::Result<bool> {
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
                let ids = compose.consumers().await?;
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
    async fn restart_rabbit(&self) -> anyhow::Result<()> {
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
    async fn kill_rabbit(&self) -> anyhow::Result<()> {
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
    async fn stop_postgres(&self, down: Duration) -> anyhow::Result<()> {
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
    async fn stored(
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let run = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let logs = std::env::temp_dir().join(format!("faults-{run}"));
    std::fs::create_dir_all(&logs)?;
    eprintln!("run {run}: logs in {}", logs.display());

    // What this run's messages say, so that its rows can be told apart.
    let content_prefix = format!("faults {run} message ");
    let (target, topology, base, local_db) = match &args.compose_project {
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
            let system = start_local(&args, &logs, &database_url, &prefix, port, &secret)?;
            let target = Target::Local {
                system,
                database_url,
                receiver,
                secret,
            };
            (
                target,
                topology,
                format!("http://127.0.0.1:{port}"),
                Some(db),
            )
        }
        Some(project) => {
            let target = Target::Compose(Compose {
                project: project.clone(),
            });
            // The stack's own broker: the standard names, no prefix.
            let base = args.producer_url.trim_end_matches('/').to_owned();
            (target, Topology::default(), base, None)
        }
    };
    let target = Arc::new(target);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let ready = async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .context("producer never became ready")?;

    let tally = Arc::new(Tally::default());
    let sending = Arc::new(AtomicBool::new(true));
    let start = Instant::now();

    // Poison, straight to the exchange, before any fault.
    let poison_ids = publish_poison(&args.amqp_url, &topology, args.poison).await?;

    // The faults, on their own schedule.
    let injector = args.inject_faults.then(|| {
        tokio::spawn(inject(
            target.clone(),
            tally.clone(),
            sending.clone(),
            args.clone(),
        ))
    });
    // Malformed requests, all the way through.
    let malformed = tokio::spawn(malformed_stream(
        client.clone(),
        base.clone(),
        tally.clone(),
        sending.clone(),
    ));

    // Local: the receiver goes down for 5 s at 40 % of the run: notifications
    // owed then are retried until it is back.
    let receiver = match target.as_ref() {
        Target::Local { receiver, .. } => Some(receiver.clone()),
        Target::Compose(_) => None,
    };
    let outage = receiver.clone().map(|receiver| {
        let at = args.duration.mul_f64(0.4);
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            receiver.stop();
            tokio::time::sleep(Duration::from_secs(5)).await;
            receiver.restart().await;
        })
    });

    // The real load: N messages paced over the run (as fast as they go with
    // --duration-secs 0), retried until accepted.
    let accepted: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
    let with_callback: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let interval = args.duration.div_f64(args.n.max(1) as f64);
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (client, base, tally, accepted, next, run, content_prefix) = (
            client.clone(),
            base.clone(),
            tally.clone(),
            accepted.clone(),
            next.clone(),
            run.clone(),
            content_prefix.clone(),
        );
        let with_callback = with_callback.clone();
        let hook_url = receiver.as_ref().map(|r| r.url("/faults"));
        let (n, every) = (args.n, args.callback_every);
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let content = format!("{content_prefix}{i}");
                let callback = hook_url.as_deref().filter(|_| i % every == 0);
                let key = format!("{run}-{i}");
                if let Some(id) =
                    send_until_accepted(&client, &base, &key, &content, callback, &tally).await
                {
                    if let Ok(mut map) = accepted.lock() {
                        map.insert(id, content);
                    }
                    if callback.is_some() {
                        if let Ok(mut set) = with_callback.lock() {
                            set.insert(id);
                        }
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    eprintln!("sent {} messages in {:?}", args.n, start.elapsed());
    sending.store(false, Ordering::SeqCst);
    if let Some(injector) = injector {
        injector.await??;
    }
    malformed.await?;
    let accepted = Arc::try_unwrap(accepted)
        .map_err(|_| anyhow::anyhow!("senders still running"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;

    // Let the consumers finish, then (local) stop them gracefully.
    eprintln!("waiting for the queue to drain…");
    let amqp = Amqp::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = amqp.create_channel().await?;
    let drained = wait_drained(
        &target,
        &client,
        &base,
        &content_prefix,
        accepted.len(),
        &channel,
        &topology,
    )
    .await;
    if let Some(outage) = outage {
        outage.await?;
    }
    let with_callback: HashSet<Uuid> = with_callback
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    // Notifications go on while the consumers live: wait for every one.
    let webhooks = match target.as_ref() {
        Target::Local {
            receiver, secret, ..
        } => {
            eprintln!("waiting for {} notifications…", with_callback.len());
            let notified = |receiver: &e2e::Receiver| -> HashSet<Uuid> {
                receiver
                    .received()
                    .iter()
                    .filter(|r| r.answered == 200)
                    .filter_map(|r| r.json()["id"].as_str().and_then(|s| s.parse().ok()))
                    .collect()
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline && !with_callback.is_subset(&notified(receiver)) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let received = receiver.received();
            let seen = notified(receiver);
            let unnotified = with_callback.difference(&seen).count();
            let bad_signatures = received
                .iter()
                .filter(|r| !e2e::receiver::verify(secret.as_bytes(), r))
                .count();
            let webhook_ids: HashSet<&String> = received.iter().map(|r| &r.id).collect();
            Some((
                unnotified,
                bad_signatures,
                received.len(),
                webhook_ids.len(),
            ))
        }
        Target::Compose(_) => None,
    };
    let graceful = match target.as_ref() {
        Target::Local { system, .. } => Some(stop_local(system).await?),
        Target::Compose(_) => None,
    };

    // The verdict.
    let rows = target.stored(&client, &base, &content_prefix).await?;
    let total = rows.len();
    let stored: HashMap<Uuid, String> = rows.into_iter().collect();
    let distinct = stored.len();
    let lost = accepted
        .keys()
        .filter(|id| !stored.contains_key(id))
        .count();
    let unannounced = stored
        .keys()
        .filter(|id| !accepted.contains_key(id))
        .count();
    let wrong_payload = accepted
        .iter()
        .filter(|(id, content)| stored.get(id).is_some_and(|s| s != *content))
        .count();
    let dead = take_all(&channel, &topology.dead_queue).await?;
    let dead_ids: Vec<String> = dead
        .iter()
        .map(|p| {
            p.message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .collect();
    let dead_set: HashSet<&String> = dead_ids.iter().collect();
    let poison_set: HashSet<&String> = poison_ids.iter().collect();
    let store_depth = depth(&channel, &topology.store_queue).await?;
    if let Some(db) = &local_db {
        // The run's own topology and database; a compose stack keeps its own.
        let _ = topology.delete(&channel).await;
        let mut admin = PgConnection::establish(&format!("{}/postgres", args.server_url))?;
        sql_ok(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        )?;
    }
    let _ = amqp.close(200, "".into()).await;

    let t = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let counts = [
        t(&tally.consumer_kills),
        t(&tally.rabbit_app_restarts),
        t(&tally.rabbit_hard_kills),
        t(&tally.pg_restarts),
    ];
    let names = target.fault_names();
    let mut checks = vec![
        (
            "every 202 id has exactly one row (lost)".to_owned(),
            lost == 0 && total == distinct,
            format!("{lost} lost, {} duplicate rows", total - distinct),
        ),
        (
            "no row without a 202".to_owned(),
            unannounced == 0,
            unannounced.to_string(),
        ),
        (
            "payloads match what was sent".to_owned(),
            wrong_payload == 0,
            format!("{wrong_payload} differ"),
        ),
        (
            "messages.dead holds exactly the poison".to_owned(),
            dead_set == poison_set && dead.len() == poison_ids.len(),
            format!(
                "{} dead letters ({} distinct) for {} poison",
                dead.len(),
                dead_set.len(),
                poison_set.len()
            ),
        ),
        (
            "messages.store drained".to_owned(),
            store_depth == 0 && drained,
            format!("{store_depth} left"),
        ),
        (
            "malformed requests got 4xx, never 202".to_owned(),
            t(&tally.unexpected) == 0,
            format!("{} unexpected answers", t(&tally.unexpected)),
        ),
    ];
    if let Some((unnotified, bad_signatures, _, _)) = webhooks {
        checks.push((
            "every message sent with a callback was notified, signed".to_owned(),
            unnotified == 0 && bad_signatures == 0,
            format!(
                "{unnotified} of {} never notified, {bad_signatures} bad signatures",
                with_callback.len()
            ),
        ));
    }
    if let Some(graceful) = graceful {
        checks.push((
            "consumers stopped gracefully (SIGTERM, exit 0)".to_owned(),
            graceful == args.consumers,
            format!("{graceful} of {}", args.consumers),
        ));
    }
    if args.inject_faults {
        checks.push((
            "every fault was injected".to_owned(),
            counts[0] > 0 && counts[1] == 1 && counts[2] == 1 && counts[3] == 1,
            format!("{} faults", counts.iter().sum::<usize>()),
        ));
        checks.push((
            "every fault began while messages were being sent".to_owned(),
            t(&tally.faults_after_load) == 0,
            format!("{} began after the last 202", t(&tally.faults_after_load)),
        ));
    }
    println!("\n| Measure | Value |\n| --- | --- |");
    let mut measures = vec![
        ("messages sent".to_owned(), args.n.to_string()),
        ("HTTP attempts".to_owned(), t(&tally.sent).to_string()),
        (
            "202 (distinct ids)".to_owned(),
            format!("{} ({})", t(&tally.accepted), accepted.len()),
        ),
        (
            "retried (503 / connection errors)".to_owned(),
            t(&tally.retried).to_string(),
        ),
        (
            "malformed requests → 4xx".to_owned(),
            t(&tally.client_errors).to_string(),
        ),
        ("rows".to_owned(), total.to_string()),
        ("duplicates".to_owned(), (total - distinct).to_string()),
        ("lost".to_owned(), lost.to_string()),
        (
            "dead-lettered (poison sent)".to_owned(),
            format!("{} ({})", dead.len(), poison_ids.len()),
        ),
    ];
    if let Some((_, _, received, distinct)) = webhooks {
        measures.push((
            "notifications owed (requests received, distinct webhook-ids)".to_owned(),
            format!("{} ({received}, {distinct})", with_callback.len()),
        ));
    }
    if args.inject_faults {
        for (i, (name, count)) in names.iter().zip(counts).enumerate() {
            let name = if i == 3 {
                format!("{name} ({:?} down)", args.pg_down)
            } else {
                (*name).to_owned()
            };
            measures.push((name, count.to_string()));
        }
    }
    measures.push(("wall time".to_owned(), format!("{:.0?}", start.elapsed())));
    for (name, value) in measures {
        println!("| {name} | {value} |");
    }
    println!("\n| Check | Result | Detail |\n| --- | --- | --- |");
    let mut failed = false;
    for (name, ok, detail) in &checks {
        failed |= !ok;
        println!(
            "| {name} | {} | {detail} |",
            if *ok { "pass" } else { "FAIL" }
        );
    }
    if failed {
        eprintln!("FAILED (logs: {})", logs.display());
        std::process::exit(1);
    }
    println!("\nfaults: all checks passed");
    Ok(())
}

/// Start the producer and the consumers as local processes.
fn start_local(
    args: &Args,
    logs: &std::path::Path,
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
        ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1"),
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
async fn stop_local(system: &System) -> anyhow::Result<usize> {
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

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// POST until a 202, retrying 503s and transport errors with the same key.
async fn send_until_accepted(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    content: &str,
    callback: Option<&str>,
    tally: &Tally,
) -> Option<Uuid> {
    let body = match callback {
        Some(url) => serde_json::json!({ "content": content, "callback_url": url }),
        None => serde_json::json!({ "content": content }),
    };
    let mut delay = Duration::from_millis(50);
    for _ in 0..10_000 {
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let response = client
            .post(format!("{base}/messages"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        match response {
            Ok(r) if r.status() == 202 => {
                let body: serde_json::Value = r.json().await.ok()?;
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                return body["id"].as_str()?.parse().ok();
            }
            Ok(r) if r.status() == 503 => {}
            // 408: the server gave up waiting for the request (RFC 9110 says
            // the client may repeat it); seen when the machine is starved
            // during container restarts. Retried with the same key, and
            // reported.
            Ok(r) if r.status() == 408 => {
                eprintln!("408 for a valid message: retrying with the same key");
            }
            Ok(r) => {
                eprintln!("unexpected {} for a valid message", r.status());
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(_) => {} // connection refused/reset/timeout: retry
        }
        tally.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    None
}

/// Bad requests, about 20 a second, while the load runs.
async fn malformed_stream(
    client: reqwest::Client,
    base: String,
    tally: Arc<Tally>,
    sending: Arc<AtomicBool>,
) {
    let bodies: [(&str, &str); 4] = [
        ("application/json", "{\"content\": "),
        ("application/json", "{\"content\": \"\"}"),
        ("application/json", "{\"content\": \"a\\u0000b\"}"),
        ("text/plain", "{\"content\": \"x\"}"),
    ];
    let mut i = 0usize;
    while sending.load(Ordering::SeqCst) {
        let (ctype, body) = bodies[i % bodies.len()];
        i += 1;
        if let Ok(r) = client
            .post(format!("{base}/messages"))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
        {
            if r.status().is_client_error() {
                tally.client_errors.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!("malformed request answered {}", r.status());
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_poison(
    amqp_url: &str,
    topology: &Topology,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let conn = Amqp::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4().to_string();
        let body: &[u8] = if i % 2 == 0 {
            b"\xff not json"
        } else {
            br#"{"content": "nul \u0000"}"#
        };
        let confirm = channel
            .basic_publish(
                topology.exchange.as_str().into(),
                "".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_delivery_mode(2),
            )
            .await?
            .await?;
        if confirm != Confirmation::Ack(None) {
            bail!("poison publish not confirmed");
        }
        ids.push(id);
    }
    let _ = conn.close(200, "".into()).await;
    Ok(ids)
}

/// The fault schedule, scaled to the run's duration.
async fn inject(
    target: Arc<Target>,
    tally: Arc<Tally>,
    sending: Arc<AtomicBool>,
    args: Args,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let at = |fraction: f64| start + args.duration.mul_f64(fraction);
    // A fault that begins after the load ended proves nothing: count it.
    let begin = |what: &str| {
        eprintln!("fault: {what}");
        if !sending.load(Ordering::SeqCst) {
            tally.faults_after_load.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Containers take longer to kill and start than local processes.
    let kill_every = match target.as_ref() {
        Target::Local { .. } => Duration::from_secs(3),
        Target::Compose(_) => Duration::from_secs(5),
    };
    let killer = {
        let (target, tally, sending) = (target.clone(), tally.clone(), sending.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            while sending.load(Ordering::SeqCst) {
                tokio::time::sleep(kill_every).await;
                if !sending.load(Ordering::SeqCst) {
                    break;
                }
                round += 1;
                match target.kill_consumer(round).await {
                    Ok(true) => {
                        tally.consumer_kills.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => break,
                    Err(e) => eprintln!("cannot kill and restart a consumer: {e:#}"),
                }
            }
        })
    };

    let names = target.fault_names();
    tokio::time::sleep_until(at(0.15).into()).await;
    begin(names[1]);
    target.restart_rabbit().await?;
    tally.rabbit_app_restarts.fetch_add(1, Ordering::Relaxed);

    tokio::time::sleep_until(at(0.35).into()).await;
    begin(names[2]);
    target.kill_rabbit().await?;
    tally.rabbit_hard_kills.fetch_add(1, Ordering::Relaxed);

    tokio::time::sleep_until(at(0.55).into()).await;
    begin(&format!("{} for {:?}", names[3], args.pg_down));
    target.stop_postgres(args.pg_down).await?;
    tally.pg_restarts.fetch_add(1, Ordering::Relaxed);

    // Keep killing consumers until the load is done.
    while sending.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    killer.await?;
    Ok(())
}

async fn depth(channel: &lapin::Channel, queue: &str) -> anyhow::Result<u32> {
    let q = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Wait until every accepted id is stored and the queues are empty.
async fn wait_drained(
    target: &Target,
    client: &reqwest::Client,
    base: &str,
    content_prefix: &str,
    expected: usize,
    channel: &lapin::Channel,
    topology: &Topology,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let mut queued = 0;
        let mut queues = vec![topology.store_queue.clone()];
        queues.extend(
            topology
                .retry_delays
                .iter()
                .map(|d| topology.retry_queue(*d)),
        );
        for q in &queues {
            queued += depth(channel, q).await.unwrap_or(1);
        }
        // Count rows only once the queues look empty: through the API
        // (compose) that means reading every page.
        if queued == 0 {
            let count = match target {
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
                Target::Compose(_) => target
                    .stored(client, base, content_prefix)
                    .await
                    .map(|rows| rows.len())
                    .unwrap_or(0),
            };
            if count >= expected {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

async fn take_all(channel: &lapin::Channel, queue: &str) -> anyhow::Result<Vec<BasicProperties>> {
    let mut out = Vec::new();
    while let Some(msg) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        msg.delivery.acker.ack(BasicAckOptions::default()).await?;
        out.push(msg.delivery.properties);
    }
    Ok(out)
}
