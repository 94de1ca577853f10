//! Opening a RabbitMQ connection the same way on both sides: heartbeats on,
//! a bounded connect time, a connection name visible in the management UI,
//! and, with several nodes (a cluster), moving to the next live one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, DefaultConnectionBuilder};

/// Heartbeat interval (seconds) used when `AMQP_URL` does not set one: a dead
/// peer is noticed within two intervals instead of waiting on TCP timeouts.
///
/// 5 s, RabbitMQ's lowest recommended value, because of the cluster's
/// promise that no client waits more than 20 s for a 202 while a node dies
/// or is cut off: a silently vanished node (no FIN, no RST) is only noticed
/// through heartbeats, and lapin gives up after two intervals of silence,
/// checked every half interval, so up to 2.5 intervals. With 10 s that alone
/// was 20-25 s; with 5 s it is 10-12.5 s, which leaves time to reconnect to
/// the next node. The cost is one 8-byte frame every 2.5 s each way.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `AMQP_URL` does not parse.
    #[error("invalid AMQP URL: {0}")]
    BadUrl(String),
    /// The broker refused or the network failed.
    #[error("cannot connect to RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    /// The TLS handshake with an `amqps://` node failed (see [`crate::tls`]).
    #[error("cannot connect to RabbitMQ at {node}: TLS handshake failed: {reason} ({hint})")]
    Tls {
        /// The node's `host:port`.
        node: String,
        /// What rustls or the broker said.
        reason: String,
        /// Which setting to look at.
        hint: &'static str,
    },
    /// No answer within the connect timeout.
    #[error("cannot connect to RabbitMQ: timed out after {0:?}")]
    Timeout(Duration),
}

/// Parse and check an AMQP URL, adding the default heartbeat if it has none.
pub fn parse_url(url: &str) -> Result<AMQPUri, ConnectError> {
    let mut uri: AMQPUri = url.parse().map_err(ConnectError::BadUrl)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECS);
    }
    Ok(uri)
}

/// The broker nodes a process may use: `AMQP_URL`, one URL or several
/// separated by commas (the nodes of one cluster). The order is shuffled
/// once per process, so replicas spread over the nodes; each connect starts
/// with the node after the one used last, so a process whose node went away
/// moves to the next live one instead of waiting for it to come back.
#[derive(Clone)]
pub struct Nodes {
    uris: Vec<AMQPUri>,
    /// `host:port` of each node, for logs, `/readyz` and metrics.
    names: Vec<String>,
    /// Where the next connect starts.
    next: Arc<AtomicUsize>,
    /// What `amqps://` nodes are trusted with (see [`crate::tls`]).
    tls: Arc<OwnedTLSConfig>,
}

/// Only the nodes' `host:port`: the URLs carry the password.
impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").field("nodes", &self.names).finish()
    }
}

impl Nodes {
    /// Parse a comma-separated list of AMQP URLs (a single URL is fine).
    pub fn parse(list: &str) -> Result<Self, ConnectError> {
        let mut uris = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(parse_url)
            .collect::<Result<Vec<_>, _>>()?;
        if uris.is_empty() {
            return Err(ConnectError::BadUrl("no URL given".into()));
        }
        fastrand::shuffle(&mut uris);
        let names = uris
            .iter()
            .map(|u| format!("{}:{}", u.authority.host, u.authority.port))
            .collect();
        Ok(Self {
            uris,
            names,
            next: Arc::new(AtomicUsize::new(0)),
            tls: Arc::default(),
        })
    }

    /// The same nodes, connecting to `amqps://` ones with `tls`.
    pub fn with_tls(mut self, tls: &crate::tls::AmqpTls) -> Self {
        self.tls = Arc::new(tls.config());
        self
    }

    /// How many of the nodes are `amqps://`.
    pub fn tls_count(&self) -> usize {
        self.uris
            .iter()
            .filter(|u| u.scheme == AMQPScheme::AMQPS)
            .count()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.uris.len()
    }

    /// Always false: parsing refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.uris.is_empty()
    }

    /// The virtual host (the nodes of one cluster share it): for RabbitMQ's
    /// management API, which names queues by vhost.
    pub fn vhost(&self) -> &str {
        self.uris.first().map_or("/", |u| u.vhost.as_str())
    }

    /// Connect to the first node that answers, trying each once, starting
    /// after the node used last. Returns the connection and the node's
    /// `host:port`. Each attempt is bounded by `timeout`.
    pub async fn connect(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(Connection, String), ConnectError> {
        let start = self.next.load(Ordering::Relaxed);
        self.connect_from(start, name, timeout).await
    }

    /// Connect to `node` if it answers, else to the next live one (a second
    /// connection of a process goes where its first went).
    pub async fn connect_near(
        &self,
        node: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(Connection, String), ConnectError> {
        let start = self.names.iter().position(|n| n == node).unwrap_or(0);
        self.connect_from(start, name, timeout).await
    }

    async fn connect_from(
        &self,
        start: usize,
        name: &str,
        timeout: Duration,
    ) -> Result<(Connection, String), ConnectError> {
        let mut last = ConnectError::BadUrl("no URL given".into());
        for k in 0..self.uris.len() {
            let i = (start + k) % self.uris.len();
            match connect(&self.uris[i], name, timeout, &self.tls).await {
                Ok(connection) => {
                    // Next time (after this connection is lost), start with
                    // the following node.
                    self.next.store(i + 1, Ordering::Relaxed);
                    return Ok((connection, self.names[i].clone()));
                }
                Err(e) => {
                    log::warn!("RabbitMQ node {} unavailable: {e}", self.names[i]);
                    last = e;
                }
            }
        }
        self.next.store(start + 1, Ordering::Relaxed);
        Err(last)
    }
}

/// Open a connection named `name` (shown in the management UI), giving up
/// after `timeout`; over TLS with `tls` when `uri` is `amqps://`.
pub async fn connect(
    uri: &AMQPUri,
    name: &str,
    timeout: Duration,
    tls: &OwnedTLSConfig,
) -> Result<Connection, ConnectError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let builder = DefaultConnectionBuilder::new()?
        .with_uri(uri.clone())
        .with_properties(props)
        .with_tls_config(tls.clone());
    match tokio::time::timeout(timeout, builder.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(match crate::tls::handshake_failure(uri, &e) {
            Some(failure) => ConnectError::Tls {
                node: format!("{}:{}", uri.authority.host, uri.authority.port),
                reason: failure.reason,
                hint: failure.hint,
            },
            None => ConnectError::Broker(e),
        }),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

/// The name a process gives its connections in the management UI:
/// `<role>-<host>-<pid>`. In a container every process is PID 1, so the
/// hostname (the container id under Docker) is what tells replicas apart.
pub fn connection_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{role}-{host}-{}", std::process::id())
}

/// A URL safe to log: the password replaced by `***`.
pub fn redact(url: &str) -> String {
    crate::redact::url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_heartbeat_and_keeps_explicit_one() {
        assert_eq!(
            parse_url("amqp://guest:guest@127.0.0.1:5672/%2f")
                .unwrap()
                .query
                .heartbeat,
            Some(DEFAULT_HEARTBEAT_SECS)
        );
        assert_eq!(
            parse_url("amqp://127.0.0.1:5672/%2f?heartbeat=3")
                .unwrap()
                .query
                .heartbeat,
            Some(3)
        );
        assert!(parse_url("http://nope").is_err());
    }

    #[test]
    fn node_lists_parse_and_name_each_node() {
        let nodes = Nodes::parse(
            "amqp://u:p@rabbitmq-1:5672/%2f, amqp://u:p@rabbitmq-2:5672/%2f,amqp://u:p@rabbitmq-3:5672/%2f",
        )
        .unwrap();
        assert_eq!(nodes.len(), 3);
        let mut names = nodes.names.clone();
        names.sort();
        assert_eq!(
            names,
            ["rabbitmq-1:5672", "rabbitmq-2:5672", "rabbitmq-3:5672"]
        );
        assert_eq!(Nodes::parse("amqp://127.0.0.1:5672/%2f").unwrap().len(), 1);
        assert!(Nodes::parse(" , ").is_err());
        assert!(Nodes::parse("amqp://a,http://b").is_err());
    }

    #[tokio::test]
    async fn a_dead_node_is_skipped() {
        // Port 1 refuses at once; the second node is the local broker.
        let nodes = Nodes {
            uris: vec![
                parse_url("amqp://guest:guest@127.0.0.1:1/%2f").unwrap(),
                parse_url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            ],
            names: vec!["127.0.0.1:1".into(), "127.0.0.1:5672".into()],
            next: Arc::new(AtomicUsize::new(0)),
            tls: Arc::default(),
        };
        let (connection, node) = nodes.connect("test", Duration::from_secs(5)).await.unwrap();
        assert_eq!(node, "127.0.0.1:5672");
        let _ = connection.close(200, "".into()).await;
    }

    #[test]
    fn connection_names_tell_processes_apart() {
        let name = connection_name("consumer");
        assert!(name.starts_with("consumer-"), "{name}");
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("amqp://user:secret@host:5672/%2f"),
            "amqp://user:***@host:5672/%2f"
        );
        assert_eq!(redact("postgres://host/db"), "postgres://host/db");
    }
}
