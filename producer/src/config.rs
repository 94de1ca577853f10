//! The producer's settings, read from the environment (see `.env.example`).

use std::time::Duration;

use shared::{CommonSettings, ConfigError, Env};

/// Everything the producer needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker, database and topology settings shared with the consumer.
    pub common: CommonSettings,
    /// `BIND_ADDR` (default `0.0.0.0:8080`): the HTTP listen address.
    pub bind_addr: String,
    /// `MAX_BODY_BYTES` (default 65536): larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `MAX_BATCH_BODY_BYTES` (default 4 MiB): body limit of `POST /messages/batch`.
    pub max_batch_body_bytes: usize,
    /// `BODY_TIMEOUT_MS` (default 30000): the longest a request body may
    /// take to arrive, from the end of the head (408 after).
    pub body_timeout: Duration,
    /// `PUBLISH_TIMEOUT_MS` (default 5000): the longest a request waits for
    /// the broker's confirm before answering 503.
    pub publish_timeout: Duration,
    /// `PUBLISH_CHANNELS` (default 4): confirm-mode channels shared by all
    /// requests, used round-robin.
    pub publish_channels: usize,
    /// `RETRY_AFTER_SECS` (default 1): the `Retry-After` of a 503.
    pub retry_after_secs: u32,
    /// `API_TOKEN` (default unset): when set, every endpoint but the probes
    /// and `/metrics` requires `Authorization: Bearer <token>`.
    pub api_token: crate::http::access::ApiToken,
    /// `ADMIN_TOKEN` (default unset): enables the dead-letter endpoints,
    /// which then require `Authorization: Bearer <ADMIN_TOKEN>`.
    pub admin_token: crate::http::access::AdminToken,
    /// `HTTP_WORKERS` (default: one per CPU): actix worker threads.
    pub http_workers: usize,
    /// `RABBITMQ_MANAGEMENT_URL` (default unset): RabbitMQ's management
    /// API, asked by the dashboard for deliveries in flight.
    pub rabbitmq_management: Option<crate::management::ManagementUrl>,
    /// `WEBHOOK_ALLOWED_HOSTS` (comma-separated, default none): callback
    /// hosts accepted even though they are or resolve to loopback, private
    /// or link-local addresses.
    pub webhook_allowed_hosts: shared::webhook::AllowedHosts,
}

impl Settings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            common: CommonSettings::from_env(env)?,
            bind_addr: env.string_or("BIND_ADDR", "0.0.0.0:8080")?,
            max_body_bytes: env.number_in("MAX_BODY_BYTES", 65_536, 16..=64 * 1024 * 1024)?,
            max_batch_body_bytes: env.number_in(
                "MAX_BATCH_BODY_BYTES",
                4 * 1024 * 1024,
                16..=256 * 1024 * 1024,
            )?,
            body_timeout: env.millis_or("BODY_TIMEOUT_MS", 30_000)?,
            publish_timeout: env.millis_or("PUBLISH_TIMEOUT_MS", 5000)?,
            publish_channels: env.number_in("PUBLISH_CHANNELS", 4, 1..=64)?,
            retry_after_secs: env.number_in("RETRY_AFTER_SECS", 1, 1..=3600)?,
            api_token: crate::http::access::ApiToken(
                env.raw("API_TOKEN")?.map(crate::http::access::Secret::new),
            ),
            admin_token: crate::http::access::AdminToken(
                env.raw("ADMIN_TOKEN")?
                    .map(crate::http::access::Secret::new),
            ),
            http_workers: env.number_in("HTTP_WORKERS", cpus, 1..=256)?,
            rabbitmq_management: env
                .raw("RABBITMQ_MANAGEMENT_URL")?
                .map(|url| crate::management::ManagementUrl::parse(&url))
                .transpose()
                .map_err(|reason| {
                    ConfigError::new("RABBITMQ_MANAGEMENT_URL", reason.to_string())
                })?,
            webhook_allowed_hosts: shared::webhook::AllowedHosts::parse(
                &env.string_or("WEBHOOK_ALLOWED_HOSTS", "")?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut pairs = vec![
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("DATABASE_URL", "postgres://root@127.0.0.1:5432/x"),
        ];
        pairs.extend_from_slice(extra);
        Settings::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn the_api_listens_on_loopback_unless_told_otherwise() {
        // Compose sets 0.0.0.0:8080 inside the container (issue 16 #1).
        let addr: std::net::SocketAddr = with(&[]).unwrap().bind_addr.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 8080);
    }

    #[test]
    fn a_bad_management_url_names_the_variable() {
        assert!(with(&[]).unwrap().rabbitmq_management.is_none());
        let ok = with(&[("RABBITMQ_MANAGEMENT_URL", "http://u:p@rabbit:15672")]).unwrap();
        assert!(ok.rabbitmq_management.is_some());
        let err = with(&[("RABBITMQ_MANAGEMENT_URL", "https://rabbit")]).unwrap_err();
        assert_eq!(err.var, "RABBITMQ_MANAGEMENT_URL");
        // The password never shows in the settings' debug output.
        assert!(!format!("{ok:?}").contains(":p@"));
    }
}
