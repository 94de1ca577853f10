//! `cluster`: the partition test of the three-node RabbitMQ cluster
//! (`docker-compose.cluster.yml`), run by `scripts/cluster-test.sh` against a
//! running compose project.
//!
//! A client posts messages at a steady rate to the producer's published
//! port, retrying 503s and connection errors with the same Idempotency-Key
//! (as `faults` does), while the consumers store them. Meanwhile, one after
//! another:
//! 1. the node leading `messages.store` (management API: the queue's
//!    `leader`) is killed (`docker compose kill -s KILL`), later started;
//! 2. one node is cut off the network (`docker network disconnect`) for a
//!    while, then reconnected;
//! 3. the node the producer is connected to (its `/readyz` "node") is cut
//!    off the same way;
//! 4. all three nodes are restarted one after another (a rolling upgrade),
//!    each one rejoining before the next goes.
//!
//! After each fault it waits until the cluster is whole again (3 running
//! nodes, no partition, 3 online members of `messages.store`). Then it waits
//! for `messages.store` to drain, reads this run's rows from PostgreSQL
//! (`docker compose exec postgres psql`: the database is not published) and
//! classifies every message as RabbitMQ's Jepsen suite does:
//! * lost: the client got a 202, the message was never stored;
//! * duplicated: stored more than once;
//! * unexpected: stored, but never sent (or under another id than the 202's);
//! * recovered: outcome unknown to the client (it gave up without a 202),
//!   stored anyway.
//!
//! Pass: nothing lost, duplicated or unexpected; `messages.store` drained;
//! every fault happened; no message waited longer than `--max-wait-secs`
//! (20) from its first attempt to its 202 while a fault was on.
//!
//! `docker compose` is called with `-p <project>` and the caller's
//! environment, so `COMPOSE_FILE` must name both compose files.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::client::{post_message, Attempt, Backoff};
use bench::docker::{docker, Compose};
use bench::flags::Flags;
use bench::report::{self, secs, Check};
use uuid::Uuid;

/// The compose services of the cluster's nodes (also their hostnames).
const NODES: [&str; 3] = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"];

/// Settings of one run (flags `--name value`).
#[derive(Clone)]
struct Args {
    /// The compose project under test.
    project: String,
    /// The producer's published port, `http://127.0.0.1:PORT`.
    producer_url: String,
    /// rabbitmq-1's published management API, `http://127.0.0.1:PORT/api`.
    mgmt_url: String,
    mgmt_user: String,
    mgmt_password: String,
    /// Messages per second the client starts.
    rate: u32,
    /// Quiet time before the first fault, between faults and after the last.
    settle: Duration,
    /// How long the killed leader stays down.
    down: Duration,
    /// How long a node stays cut off the network.
    cut: Duration,
    /// The longest a client may wait for a 202 during a fault.
    max_wait: Duration,
    /// When the client gives a message up (its outcome is then unknown).
    give_up: Duration,
    /// The kind of every message (`--kind email`; absent: `default`): a
    /// sharded kind spreads the load over its shards' leaders.
    kind: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let flags = Flags::parse()?;
    Ok(Args {
        project: flags.required("compose-project")?,
        producer_url: flags
            .string("producer-url", "http://127.0.0.1:8080")
            .trim_end_matches('/')
            .to_owned(),
        mgmt_url: flags
            .string("mgmt-url", "http://127.0.0.1:15672/api")
            .trim_end_matches('/')
            .to_owned(),
        mgmt_user: flags.string("mgmt-user", "guest"),
        mgmt_password: flags.string("mgmt-password", "guest"),
        rate: flags.number("rate", 100)?,
        settle: flags.secs("settle-secs", 10)?,
        down: flags.secs("down-secs", 15)?,
        cut: flags.secs("cut-secs", 30)?,
        max_wait: flags.secs("max-wait-secs", 20)?,
        give_up: flags.secs("give-up-secs", 60)?,
        kind: Some(flags.string("kind", "")).filter(|k| !k.is_empty()),
    })
}

/// What happened to one message, from the client's side.
struct Sent {
    /// Its first attempt.
    first: Instant,
    /// The id and time of its 202, if it got one.
    accepted: Option<(Uuid, Instant)>,
}

/// Counters of the client.
#[derive(Default)]
struct Tally {
    attempts: AtomicUsize,
    accepted: AtomicUsize,
    unavailable: AtomicUsize,
    transport_errors: AtomicUsize,
    other_status: AtomicUsize,
    retries: AtomicUsize,
    gave_up: AtomicUsize,
}

/// One injected fault and when it was on.
struct Fault {
    name: String,
    started: Instant,
    /// The cluster whole again: every node running and rejoined.
    rejoined: Instant,
}

/// The project under test, seen through docker and the management API.
struct Cluster {
    args: Args,
    http: reqwest::Client,
    compose: Compose,
}

impl Cluster {
    /// GET on the management API of rabbitmq-1, tried up to 5 times a
    /// second apart: a pooled keep-alive connection the server has just
    /// closed fails the first try, and a busy node may be slow.
    async fn mgmt(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let mut last = None;
        for _ in 0..5 {
            match self.mgmt_once(path).await {
                Ok(value) => return Ok(value),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("GET /api/{path}: no attempt")))
    }

    async fn mgmt_once(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}/{path}", self.args.mgmt_url))
            .basic_auth(&self.args.mgmt_user, Some(&self.args.mgmt_password))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("GET /api/{path}: {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// The service of the node leading `messages.store`.
    async fn store_leader(&self) -> anyhow::Result<String> {
        let queue = self.mgmt("queues/%2F/messages.store").await?;
        let leader = queue["leader"]
            .as_str()
            .or_else(|| queue["node"].as_str())
            .context("messages.store has no leader")?;
        service_of(leader)
    }

    /// The service of the node the producer is connected to, asked up to 10
    /// times a second apart (it may be between nodes).
    async fn producer_node(&self) -> anyhow::Result<String> {
        let mut last = None;
        for _ in 0..10 {
            match self.producer_node_once().await {
                Ok(node) => return Ok(node),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("/readyz: no attempt")))
    }

    async fn producer_node_once(&self) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/readyz", self.args.producer_url))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .json()
            .await?;
        let node = body["node"].as_str().context("no node in /readyz")?;
        service_of(node)
    }

    /// Whether every node runs in one cluster, without a partition, and
    /// `messages.store` has all its members online.
    async fn whole(&self) -> bool {
        let Ok(nodes) = self.mgmt_once("nodes").await else {
            return false;
        };
        let Some(nodes) = nodes.as_array() else {
            return false;
        };
        let running = nodes
            .iter()
            .filter(|n| n["running"].as_bool() == Some(true))
            .count();
        let partitioned = nodes
            .iter()
            .any(|n| n["partitions"].as_array().is_some_and(|p| !p.is_empty()));
        let Ok(queue) = self.mgmt_once("queues/%2F/messages.store").await else {
            return false;
        };
        let online = queue["online"].as_array().map_or(0, Vec::len);
        running == NODES.len() && !partitioned && online == NODES.len()
    }

    /// Wait until [`Cluster::whole`], for at most 3 minutes.
    async fn wait_whole(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if self.whole().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("the cluster did not become whole again within 3 minutes")
    }

    /// Cut a node off its network for `self.args.cut`, then reconnect it
    /// under the same names (the service name, which is also its hostname,
    /// and the container name) so that peers and clients find it again.
    async fn cut_off(&self, service: &str) -> anyhow::Result<()> {
        let id = self.compose.container(service).await?;
        let network = format!("{}_default", self.args.project);
        let name = docker(&["inspect", "--format", "{{.Name}}", &id]).await?;
        let name = name.trim().trim_start_matches('/').to_owned();
        docker(&["network", "disconnect", &network, &id]).await?;
        tokio::time::sleep(self.args.cut).await;
        docker(&[
            "network", "connect", "--alias", service, "--alias", &name, &network, &id,
        ])
        .await?;
        Ok(())
    }
}

/// `rabbit@rabbitmq-2` or `rabbitmq-2:5672` → `rabbitmq-2`.
fn service_of(node: &str) -> anyhow::Result<String> {
    let host = node.rsplit('@').next().unwrap_or(node);
    let host = host.split(':').next().unwrap_or(host);
    NODES
        .iter()
        .find(|n| **n == host)
        .map(|n| (*n).to_owned())
        .with_context(|| format!("{node} is not one of the cluster's nodes"))
}

/// POST until a 202, retrying 503s and transport errors with the same key,
/// giving up after `give_up`.
async fn send(
    client: &reqwest::Client,
    args: &Args,
    key: &str,
    content: &str,
    tally: &Tally,
) -> Sent {
    let first = Instant::now();
    let body = match &args.kind {
        Some(kind) => serde_json::json!({ "content": content, "kind": kind }),
        None => serde_json::json!({ "content": content }),
    };
    let mut backoff = Backoff::new(Duration::from_millis(100));
    loop {
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        match post_message(client, &args.producer_url, key, &body).await {
            Attempt::Accepted { id, at, .. } => {
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                return Sent {
                    first,
                    accepted: Some((id, at)),
                };
            }
            // A 202 whose body did not arrive: retry, same key.
            Attempt::AcceptedWithoutId | Attempt::Transport => {
                tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
            Attempt::Status(status) if status == 503 => {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Attempt::Status(status) => {
                eprintln!("unexpected {status} for message {key}");
                tally.other_status.fetch_add(1, Ordering::Relaxed);
            }
        }
        if first.elapsed() + backoff.peek() > args.give_up {
            tally.gave_up.fetch_add(1, Ordering::Relaxed);
            return Sent {
                first,
                accepted: None,
            };
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// The fault schedule; returns the faults as they happened.
async fn inject(cluster: &Cluster) -> anyhow::Result<Vec<Fault>> {
    let args = &cluster.args;
    let mut faults = Vec::new();

    tokio::time::sleep(args.settle).await;
    let leader = cluster.store_leader().await?;
    let name = format!(
        "1. kill -s KILL the leader of messages.store ({leader}), start it {:?} later",
        args.down
    );
    eprintln!("fault: {name}");
    let started = Instant::now();
    cluster
        .compose
        .run(&["kill", "-s", "KILL", &leader])
        .await?;
    tokio::time::sleep(args.down).await;
    cluster.compose.run(&["start", &leader]).await?;
    cluster.wait_whole().await?;
    faults.push(Fault {
        name,
        started,
        rejoined: Instant::now(),
    });

    tokio::time::sleep(args.settle).await;
    // A node other than the producer's and rabbitmq-1 (whose API this test
    // reads), when there is one: fault 3 cuts the producer's.
    let producer_node = cluster.producer_node().await?;
    let victim = NODES
        .iter()
        .rev()
        .find(|n| **n != producer_node && **n != NODES[0])
        .copied()
        .unwrap_or(NODES[2]);
    let name = format!("2. network disconnect {victim} for {:?}", args.cut);
    eprintln!("fault: {name}");
    let started = Instant::now();
    cluster.cut_off(victim).await?;
    cluster.wait_whole().await?;
    faults.push(Fault {
        name,
        started,
        rejoined: Instant::now(),
    });

    tokio::time::sleep(args.settle).await;
    let victim = cluster.producer_node().await?;
    let name = format!(
        "3. network disconnect the producer's node ({victim}) for {:?}",
        args.cut
    );
    eprintln!("fault: {name}");
    let started = Instant::now();
    cluster.cut_off(&victim).await?;
    cluster.wait_whole().await?;
    faults.push(Fault {
        name,
        started,
        rejoined: Instant::now(),
    });

    for node in NODES {
        tokio::time::sleep(args.settle).await;
        let name = format!("4. rolling restart: docker compose restart {node}");
        eprintln!("fault: {name}");
        let started = Instant::now();
        cluster.compose.run(&["restart", node]).await?;
        cluster.wait_whole().await?;
        faults.push(Fault {
            name,
            started,
            rejoined: Instant::now(),
        });
    }
    tokio::time::sleep(args.settle).await;
    Ok(faults)
}

/// This run's rows, read in the postgres container: `(id, content)`.
async fn stored(cluster: &Cluster, run: &str) -> anyhow::Result<Vec<(Uuid, String)>> {
    // `run` is hex: safe inside the SQL literal.
    let sql =
        format!("SELECT id, content FROM messages WHERE content LIKE 'cluster {run} message %'");
    let out = cluster
        .compose
        .run(&[
            "exec",
            "-T",
            "postgres",
            "sh",
            "-c",
            &format!("psql -qtA -F '|' -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -c \"{sql}\""),
        ])
        .await?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (id, content) = line.split_once('|').context("a row without |")?;
            Ok((id.parse()?, content.to_owned()))
        })
        .collect()
}

/// Wait until `messages.store` and every kind's queue (`messages.store.*`,
/// shards included) are empty and nothing is unacked; false after `limit`.
async fn drained(cluster: &Cluster, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    let mut last = String::from("unknown");
    while Instant::now() < deadline {
        if let Ok(queues) = cluster.mgmt("queues/%2F").await {
            let stores = queues.as_array().into_iter().flatten().filter(|q| {
                q["name"]
                    .as_str()
                    .is_some_and(|n| n == "messages.store" || n.starts_with("messages.store."))
            });
            let (mut ready, mut unacked) = (Some(0u64), Some(0u64));
            for q in stores {
                ready = ready.zip(q["messages_ready"].as_u64()).map(|(a, b)| a + b);
                unacked = unacked
                    .zip(q["messages_unacknowledged"].as_u64())
                    .map(|(a, b)| a + b);
            }
            last = format!("{ready:?} ready, {unacked:?} unacked");
            if ready == Some(0) && unacked == Some(0) {
                return (true, "0 ready, 0 unacked".into());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (false, last)
}

/// Start the client: one task per message, started at `args.rate` a
/// second from `start` while `sending` holds; each records its outcome in
/// `sent`. Returns how many messages it started, once all have ended.
fn generate(
    http: reqwest::Client,
    args: Args,
    run: String,
    start: Instant,
    tally: Arc<Tally>,
    sending: Arc<AtomicBool>,
    sent: Arc<Mutex<HashMap<usize, Sent>>>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let interval = Duration::from_secs(1) / args.rate.max(1);
        let mut tasks = tokio::task::JoinSet::new();
        let mut i = 0usize;
        while sending.load(Ordering::SeqCst) {
            tokio::time::sleep_until((start + interval * i as u32).into()).await;
            let (http, args, tally, sent, run) = (
                http.clone(),
                args.clone(),
                tally.clone(),
                sent.clone(),
                run.clone(),
            );
            tasks.spawn(async move {
                let content = format!("cluster {run} message {i}");
                let outcome = send(&http, &args, &format!("{run}-{i}"), &content, &tally).await;
                if let Ok(mut map) = sent.lock() {
                    map.insert(i, outcome);
                }
            });
            // Reap finished tasks as we go: the set stays as large as
            // the messages in flight, not the whole run.
            while tasks.try_join_next().is_some() {}
            i += 1;
        }
        while tasks.join_next().await.is_some() {}
        i
    })
}

/// Every message in one of Jepsen's classes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcomes {
    /// 202, stored once.
    ok: usize,
    /// 202, never stored.
    lost: usize,
    /// Stored more than once.
    duplicated: usize,
    /// Stored, never sent, or under another id than its 202's.
    unexpected: usize,
    /// Outcome unknown to the client (it gave up), stored anyway.
    recovered: usize,
    /// Outcome unknown to the client, not stored (allowed).
    unknown_absent: usize,
}

/// Classify what was `sent` against the `rows` stored (`(id, content)`,
/// the content `cluster <run> message <i>`), as RabbitMQ's Jepsen suite
/// does.
fn classify(run: &str, sent: &HashMap<usize, Sent>, rows: &[(Uuid, String)]) -> Outcomes {
    let prefix = format!("cluster {run} message ");
    let mut out = Outcomes::default();
    let mut rows_of: HashMap<usize, Vec<Uuid>> = HashMap::new();
    for (id, content) in rows {
        match content
            .strip_prefix(&prefix)
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| sent.contains_key(i))
        {
            Some(i) => rows_of.entry(i).or_default().push(*id),
            None => out.unexpected += 1,
        }
    }
    for (i, s) in sent {
        let ids = rows_of.get(i).map_or(&[][..], Vec::as_slice);
        if ids.len() > 1 {
            out.duplicated += 1;
        }
        match s.accepted {
            Some((id, _)) => {
                if ids.is_empty() {
                    out.lost += 1;
                } else if ids.iter().any(|stored| *stored != id) {
                    // Stored, but not under the id the client was given.
                    out.unexpected += 1;
                } else if ids.len() == 1 {
                    out.ok += 1;
                }
            }
            None if ids.is_empty() => out.unknown_absent += 1,
            None => out.recovered += 1,
        }
    }
    out
}

/// The pause one fault caused.
struct Pause {
    name: String,
    /// When it began, from the start of the load.
    began: Duration,
    /// Until the cluster was whole again.
    whole: Duration,
    /// The longest gap between two 202s while it was on (time to resume).
    gap: Duration,
    /// The longest wait of a message in flight while it was on, from its
    /// first attempt to its 202 (`give_up` for one that never got it).
    wait: Duration,
}

/// The pause of each fault: "while it was on" runs from its start to 5 s
/// after the cluster was whole again.
fn pauses(
    faults: &[Fault],
    sent: &HashMap<usize, Sent>,
    start: Instant,
    give_up: Duration,
) -> Vec<Pause> {
    let mut accepted_at: Vec<Instant> = sent
        .values()
        .filter_map(|s| s.accepted.map(|(_, at)| at))
        .collect();
    accepted_at.sort();
    faults
        .iter()
        .map(|f| {
            let window_end = f.rejoined + Duration::from_secs(5);
            let wait = sent
                .values()
                .filter(|s| {
                    let end = s.accepted.map_or(s.first + give_up, |(_, at)| at);
                    s.first <= window_end && end >= f.started
                })
                .map(|s| {
                    s.accepted
                        .map_or(give_up, |(_, at)| at.duration_since(s.first))
                })
                .max()
                .unwrap_or_default();
            let mut previous = f.started;
            let mut gap = Duration::ZERO;
            for at in accepted_at
                .iter()
                .filter(|at| **at >= f.started && **at <= window_end)
            {
                gap = gap.max(at.duration_since(previous));
                previous = *at;
            }
            gap = gap.max(window_end.duration_since(previous));
            Pause {
                name: f.name.clone(),
                began: f.started.duration_since(start),
                whole: f.rejoined.duration_since(f.started),
                gap,
                wait,
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let run = Uuid::new_v4().simple().to_string()[..10].to_owned();
    eprintln!("run {run}: project {}", args.project);
    let http = reqwest::Client::builder()
        // Longer than the producer's publish timeout (5 s by default), so
        // that its 503 arrives rather than our own timeout.
        .timeout(Duration::from_secs(15))
        .build()?;
    let cluster = Arc::new(Cluster {
        args: args.clone(),
        http: http.clone(),
        compose: Compose {
            project: args.project.clone(),
        },
    });
    cluster
        .wait_whole()
        .await
        .context("the cluster is not whole at the start")?;

    let tally = Arc::new(Tally::default());
    let sending = Arc::new(AtomicBool::new(true));
    let sent: Arc<Mutex<HashMap<usize, Sent>>> = Arc::default();
    let start = Instant::now();
    let generator = generate(
        http,
        args.clone(),
        run.clone(),
        start,
        tally.clone(),
        sending.clone(),
        sent.clone(),
    );

    let faults = inject(&cluster).await;
    sending.store(false, Ordering::SeqCst);
    let n = generator.await?;
    let faults = faults?;
    let load_time = start.elapsed();
    eprintln!("sent {n} messages in {load_time:.0?}; waiting for messages.store to drain…");

    let (drained_ok, drain_detail) = drained(&cluster, Duration::from_secs(180)).await;
    let rows = stored(&cluster, &run).await?;
    let sent = Arc::try_unwrap(sent)
        .map_err(|_| anyhow::anyhow!("senders still running"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let outcomes = classify(&run, &sent, &rows);
    let pauses = pauses(&faults, &sent, start, args.give_up);
    let worst_wait = pauses.iter().map(|p| p.wait).max().unwrap_or_default();
    let Outcomes {
        ok,
        lost,
        duplicated,
        unexpected,
        recovered,
        unknown_absent,
    } = outcomes;

    let t = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let row = |name: &str, value: String| [name.to_owned(), value];
    report::table(
        &["Outcome (Jepsen's classes)", "Messages"],
        [
            ("sent", n),
            ("ok: 202, stored once", ok),
            ("lost: 202, never stored", lost),
            ("duplicated: stored more than once", duplicated),
            (
                "unexpected: stored, never sent (or under another id)",
                unexpected,
            ),
            (
                "recovered: outcome unknown to the client, stored anyway",
                recovered,
            ),
            ("unknown, not stored (allowed)", unknown_absent),
        ]
        .map(|(name, value)| row(name, value.to_string())),
    );
    report::table(
        &["Client", "Value"],
        [
            row("rate", format!("{} msg/s", args.rate)),
            row("HTTP attempts", t(&tally.attempts).to_string()),
            row("202", t(&tally.accepted).to_string()),
            row("503", t(&tally.unavailable).to_string()),
            row(
                "connection errors / timeouts",
                t(&tally.transport_errors).to_string(),
            ),
            row("other statuses", t(&tally.other_status).to_string()),
            row("client retries", t(&tally.retries).to_string()),
            row("given up", t(&tally.gave_up).to_string()),
            row("faults injected", faults.len().to_string()),
            row("load time", secs(load_time)),
        ],
    );
    report::table(
        &[
            "Fault",
            "Began at",
            "Until the cluster was whole again",
            "Longest gap between 202s (time to resume)",
            "Longest client wait for a 202",
        ],
        pauses.iter().map(|p| {
            [
                p.name.clone(),
                secs(p.began),
                secs(p.whole),
                secs(p.gap),
                secs(p.wait),
            ]
        }),
    );

    let kinds = ["1.", "2.", "3.", "4."];
    let every_fault = kinds
        .iter()
        .all(|k| faults.iter().any(|f| f.name.starts_with(k)))
        && faults.iter().filter(|f| f.name.starts_with("4.")).count() == NODES.len();
    let checks = [
        Check::new("nothing lost", lost == 0, format!("{lost} lost")),
        Check::new(
            "nothing duplicated",
            duplicated == 0,
            format!("{duplicated} duplicated"),
        ),
        Check::new(
            "nothing unexpected",
            unexpected == 0,
            format!("{unexpected} unexpected"),
        ),
        Check::new("messages.store drained", drained_ok, drain_detail),
        Check::new(
            "every fault happened",
            every_fault,
            format!("{} faults", faults.len()),
        ),
        Check::new(
            "no client waited too long for a 202 during a fault",
            worst_wait <= args.max_wait,
            format!(
                "longest {} (limit {})",
                secs(worst_wait),
                secs(args.max_wait)
            ),
        ),
    ];
    if report::checks(&checks) {
        eprintln!("cluster: FAILED");
        std::process::exit(1);
    }
    println!("\ncluster: all checks passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(first: Instant, accepted: Option<(Uuid, Duration)>) -> Sent {
        Sent {
            first,
            accepted: accepted.map(|(id, after)| (id, first + after)),
        }
    }

    #[test]
    fn every_message_gets_its_jepsen_class() {
        let now = Instant::now();
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let row = |i: usize, id: Uuid| (id, format!("cluster r message {i}"));
        let sent: HashMap<usize, Sent> = [
            (0, sent(now, Some((ids[0], Duration::ZERO)))), // ok
            (1, sent(now, Some((ids[1], Duration::ZERO)))), // lost
            (2, sent(now, Some((ids[2], Duration::ZERO)))), // duplicated
            (3, sent(now, None)),                           // recovered
            (4, sent(now, None)),                           // unknown, absent
            (5, sent(now, Some((ids[5], Duration::ZERO)))), // under another id
        ]
        .into();
        let rows = [
            row(0, ids[0]),
            row(2, ids[2]),
            row(2, ids[2]),
            row(3, ids[3]),
            row(5, Uuid::new_v4()),
            (Uuid::new_v4(), "cluster r message 99".into()), // never sent
            (Uuid::new_v4(), "another run's".into()),
        ];
        assert_eq!(
            classify("r", &sent, &rows),
            Outcomes {
                ok: 1,
                lost: 1,
                duplicated: 1,
                unexpected: 3,
                recovered: 1,
                unknown_absent: 1,
            }
        );
    }

    #[test]
    fn a_pause_is_the_longest_gap_and_wait_while_the_fault_was_on() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let fault = Fault {
            name: "1. kill".into(),
            started: at(10),
            rejoined: at(20),
        };
        let sent: HashMap<usize, Sent> = [
            // 202s at 10 and 18 s, then none until the window ends at 25 s.
            (0, sent(at(10), Some((Uuid::new_v4(), Duration::ZERO)))),
            (
                1,
                sent(at(12), Some((Uuid::new_v4(), Duration::from_secs(6)))),
            ),
            // Before the fault: not in its window.
            (
                2,
                sent(at(0), Some((Uuid::new_v4(), Duration::from_secs(9)))),
            ),
        ]
        .into();
        let p = &pauses(&[fault], &sent, start, Duration::from_secs(60))[0];
        assert_eq!(p.began, Duration::from_secs(10));
        assert_eq!(p.whole, Duration::from_secs(10));
        assert_eq!(p.gap, Duration::from_secs(8));
        assert_eq!(p.wait, Duration::from_secs(6));
    }
}
