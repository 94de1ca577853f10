//! The producer's settings, read from the environment (see `.env.example`).

use std::time::Duration;

use shared::{CommonSettings, ConfigError, Env};

use crate::http::access::{AdminToken, ApiAccess, Secret};

/// File descriptors kept for the process itself, whatever the load: the
/// database pool, the broker connection, the runtime, the management API's
/// client, logs, and room to accept and refuse.
const RESERVED_FILES: u64 = 128;

/// The most streams (or waiters) the default allows, however high the
/// file limit: each holds a connection and a place in the event relay.
const MAX_LONG_LIVED_DEFAULT: u64 = 10_000;

/// The process's soft limit on open files (`RLIMIT_NOFILE`); 1024, the
/// common default, if it cannot be read.
pub fn file_limit() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map_or(1024, |(soft, _)| soft)
}

/// The default of `MAX_STREAMS` and of `MAX_WAITERS` for a file limit of
/// `nofile`: a quarter each of what is left after `RESERVED_FILES` (128), so
/// that streams and waiters together never take more than half, and
/// ordinary requests always find a descriptor (1024 files: 224 each).
pub fn long_lived_default(nofile: u64) -> usize {
    let each = (nofile.saturating_sub(RESERVED_FILES) / 4).clamp(1, MAX_LONG_LIVED_DEFAULT);
    usize::try_from(each).unwrap_or(1)
}

/// `API_TOKEN` and `ALLOW_ANONYMOUS`: both at once is a mistake worth
/// stopping for (which one was meant?).
fn api_access(env: &Env) -> Result<ApiAccess, ConfigError> {
    let anonymous = env.parse_or("ALLOW_ANONYMOUS", false)?;
    match (env.raw("API_TOKEN")?, anonymous) {
        (Some(_), true) => Err(ConfigError::new(
            "ALLOW_ANONYMOUS",
            "is true but API_TOKEN is set: unset one of them",
        )),
        (Some(token), false) => Ok(ApiAccess::Token(Secret::new(token))),
        (None, true) => Ok(ApiAccess::Anonymous),
        (None, false) => Ok(ApiAccess::LocalOnly),
    }
}

/// Everything the producer needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker, database and topology settings shared with the consumer.
    pub common: CommonSettings,
    /// `BIND_ADDR` (default `127.0.0.1:8080`): the HTTP listen address.
    /// Loopback unless told otherwise (compose sets `0.0.0.0:8080` inside
    /// the container, whose port it publishes on 127.0.0.1).
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
    /// and `/metrics` requires `Authorization: Bearer <token>`. Unset, the
    /// API answers only requests addressed to a loopback name, unless
    /// `ALLOW_ANONYMOUS=true` (default false) opens it to any host.
    pub api_access: ApiAccess,
    /// `ADMIN_TOKEN` (default unset): enables the dead-letter endpoints,
    /// which then require `Authorization: Bearer <ADMIN_TOKEN>`.
    pub admin_token: AdminToken,
    /// `HTTP_WORKERS` (default: one per CPU): actix worker threads.
    pub http_workers: usize,
    /// `MAX_STREAMS` (default: a quarter of the file limit less a reserve,
    /// see [`long_lived_default`]): open `GET /events` streams; past it, 503.
    pub max_streams: usize,
    /// `MAX_WAITERS` (default as `MAX_STREAMS`): lookups waiting with
    /// `?wait`; past it, 503.
    pub max_waiters: usize,
    /// `HEAD_TIMEOUT_MS` (default 5000): the longest a connection may go
    /// without sending a byte while the producer waits for its first
    /// request's head (see `http::head`).
    pub head_timeout: Duration,
    /// `RABBITMQ_MANAGEMENT_URL` (default unset): RabbitMQ's management
    /// API, asked by the dashboard for deliveries in flight.
    pub rabbitmq_management: Option<crate::management::ManagementUrl>,
    /// `WEBHOOK_ALLOWED_HOSTS` (comma-separated `host`, `host:port` or
    /// `host:*`, default none): callback hosts accepted even though they
    /// are or resolve to loopback, private or link-local addresses, and
    /// the ports besides 80 and 443 they may use.
    pub webhook_allowed_hosts: shared::webhook::AllowedHosts,
    /// `RETENTION_*` and every age: the producer prunes the idempotency
    /// keys past `IDEMPOTENCY_KEY_TTL` (the one table its role may prune;
    /// see `shared::retention`), and the dashboard shows them all.
    pub retention: shared::retention::RetentionSettings,
    /// `WEBHOOK_SECRET` and `WEBHOOK_PREVIOUS_SECRET` (default unset): the
    /// master secrets the consumers sign with, from which
    /// `GET /webhooks/signing-key` derives a destination's key.
    pub webhook_keys: Option<shared::webhook::SigningKeys>,
    /// `MAX_SCHEDULE_AHEAD`, `SCHEDULE_*`: scheduled messages (see
    /// `schedule::settings`).
    pub schedule: crate::schedule::settings::ScheduleSettings,
}

impl Settings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let long_lived = long_lived_default(file_limit());
        let common = CommonSettings::from_env(env)?;
        Ok(Self {
            retention: shared::retention::RetentionSettings::from_env(
                env,
                common.idempotency_key_ttl,
            )?,
            common,
            bind_addr: env.string_or("BIND_ADDR", "127.0.0.1:8080")?,
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
            api_access: api_access(env)?,
            admin_token: AdminToken(env.raw("ADMIN_TOKEN")?.map(Secret::new)),
            http_workers: env.number_in("HTTP_WORKERS", cpus, 1..=256)?,
            max_streams: env.number_in("MAX_STREAMS", long_lived, 1..=1_000_000)?,
            max_waiters: env.number_in("MAX_WAITERS", long_lived, 1..=1_000_000)?,
            head_timeout: env.millis_or("HEAD_TIMEOUT_MS", 5000)?,
            rabbitmq_management: env
                .raw("RABBITMQ_MANAGEMENT_URL")?
                .map(|url| crate::management::ManagementUrl::parse(&url))
                .transpose()
                .map_err(|reason| {
                    ConfigError::new("RABBITMQ_MANAGEMENT_URL", reason.to_string())
                })?,
            webhook_allowed_hosts: shared::webhook::settings::allowed_hosts(env)?,
            webhook_keys: shared::webhook::settings::signing_keys(env)?,
            schedule: crate::schedule::settings::ScheduleSettings::from_env(env)?,
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
    fn access_comes_from_the_token_and_allow_anonymous() {
        assert!(matches!(
            with(&[]).unwrap().api_access,
            ApiAccess::LocalOnly
        ));
        let open = with(&[("ALLOW_ANONYMOUS", "true")]).unwrap();
        assert!(matches!(open.api_access, ApiAccess::Anonymous));
        let token = with(&[("API_TOKEN", "t")]).unwrap();
        assert!(matches!(token.api_access, ApiAccess::Token(_)));
        let both = with(&[("API_TOKEN", "t"), ("ALLOW_ANONYMOUS", "true")]).unwrap_err();
        assert_eq!(both.var, "ALLOW_ANONYMOUS");
        assert_eq!(
            with(&[("ALLOW_ANONYMOUS", "yes")]).unwrap_err().var,
            "ALLOW_ANONYMOUS"
        );
    }

    #[test]
    fn caps_on_long_lived_requests_leave_room_under_the_file_limit() {
        assert_eq!(long_lived_default(1024), 224);
        assert_eq!(long_lived_default(100), 1);
        assert_eq!(long_lived_default(1 << 20), 10_000);
        for nofile in [256, 1024, 4096, 65_536] {
            let both = 2 * long_lived_default(nofile) as u64;
            assert!(both <= (nofile - RESERVED_FILES) / 2, "{nofile}");
        }
        let s = with(&[("MAX_STREAMS", "7"), ("MAX_WAITERS", "9")]).unwrap();
        assert_eq!((s.max_streams, s.max_waiters), (7, 9));
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
