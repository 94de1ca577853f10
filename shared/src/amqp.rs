//! Opening a RabbitMQ connection the same way on both sides: heartbeats on,
//! a bounded connect time, and a connection name visible in the management UI.

use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// Heartbeat interval (seconds) used when `AMQP_URL` does not set one: a dead
/// peer is noticed within two intervals instead of waiting on TCP timeouts.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `AMQP_URL` does not parse.
    #[error("invalid AMQP URL: {0}")]
    BadUrl(String),
    /// The broker refused or the network failed.
    #[error("cannot connect to RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
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

/// Open a connection named `name` (shown in the management UI), giving up
/// after `timeout`.
pub async fn connect(
    uri: &AMQPUri,
    name: &str,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(timeout, Connection::connect_uri(uri.clone(), props)).await {
        Ok(result) => Ok(result?),
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
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => "<unparseable url>".to_owned(),
    }
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
