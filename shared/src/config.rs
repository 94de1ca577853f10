//! Typed environment-variable helpers over `dotenvy`.
//!
//! Every setting is read through [`Env`], so a bad or missing value always
//! produces the same one-line error naming the variable, and a process can exit
//! with it instead of panicking deep inside a library.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// An error for variable `var`.
    pub fn new(var: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<crate::tls::TlsSettingError> for ConfigError {
    fn from(e: crate::tls::TlsSettingError) -> Self {
        ConfigError::new(e.var, e.reason)
    }
}

/// A source of settings: the process environment (after loading `.env`), or a
/// fixed map in tests so that parallel tests never race on `set_var`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: Option<std::collections::HashMap<String, String>>,
}

impl Env {
    /// The process environment, with `.env` loaded first if there is one.
    /// Variables already set in the environment win over `.env`.
    pub fn from_process() -> Self {
        // A missing .env is the normal case in containers; only a malformed
        // file is worth a warning.
        if let Err(e) = dotenvy::dotenv() {
            if !e.not_found() {
                eprintln!("warning: ignoring .env: {e}");
            }
        }
        Self { overrides: None }
    }

    /// A fixed set of variables and nothing else (for tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The raw value of `var`, if set and not empty.
    pub fn raw(&self, var: &str) -> Result<Option<String>, ConfigError> {
        let value = match &self.overrides {
            Some(map) => map.get(var).cloned(),
            None => match std::env::var(var) {
                Ok(v) => Some(v),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::new(var, "is not valid UTF-8"))
                }
            },
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }

    /// A required string.
    pub fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.raw(var)?
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    /// An optional string with a default.
    pub fn string_or(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.raw(var)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A parsed value with a default.
    pub fn parse_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(var)? {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(var, format!("cannot parse {v:?}: {e}"))),
        }
    }

    /// A parsed number that must lie in `range`.
    pub fn number_in<T>(
        &self,
        var: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let v = self.parse_or(var, default)?;
        if !range.contains(&v) {
            return Err(ConfigError::new(
                var,
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            ));
        }
        Ok(v)
    }

    /// A duration written `10s`, `24h`, `30d`... ([`crate::duration`]),
    /// at least `min`.
    pub fn duration_or(
        &self,
        var: &str,
        default: Duration,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = self.raw(var)? else {
            return Ok(default);
        };
        let d = crate::duration::parse(&text).map_err(|e| ConfigError::new(var, e.to_string()))?;
        if d < min {
            return Err(ConfigError::new(
                var,
                format!("must be at least {}", crate::duration::format(min)),
            ));
        }
        Ok(d)
    }

    /// A duration as [`Self::duration_or`], or none: unset, `forever` or
    /// `off` (a retention that keeps everything).
    pub fn duration_or_forever(
        &self,
        var: &str,
        min: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.raw(var)?.as_deref().map(str::trim) {
            None | Some("forever") | Some("off") => Ok(None),
            Some(_) => self.duration_or(var, Duration::ZERO, min).map(Some),
        }
    }

    /// A duration given in milliseconds, at least 1 ms.
    pub fn millis_or(&self, var: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.number_in(var, default_ms, 1..=86_400_000)
            .map(Duration::from_millis)
    }
}

/// The settings both binaries share: where the broker and the database are,
/// and how long to wait for them. `Debug` prints no password.
#[derive(Clone)]
pub struct CommonSettings {
    /// `AMQP_URL` (required): one URL, or the comma-separated URLs of a
    /// cluster's nodes; each parsed, with a default heartbeat added.
    pub amqp_nodes: crate::amqp::Nodes,
    /// `AMQP_URL` with the passwords redacted, for logs.
    pub amqp_url_redacted: String,
    /// `DATABASE_URL` (required).
    pub database_url: String,
    /// `TOPOLOGY_PREFIX` (default empty): prepended to every exchange and
    /// queue name, so several pipelines (or tests) can share a vhost.
    pub topology_prefix: String,
    /// `KINDS` (default `default`): the kinds of work, the same list for
    /// producer and consumers; `default` is always among them. With
    /// `KIND_SHARDS` (`email:4`): how many queues each kind spreads over.
    pub kinds: crate::kind::Kinds,
    /// `DB_POOL_SIZE` (default 8): connections in the r2d2 pool.
    pub db_pool_size: u32,
    /// `DB_TIMEOUT_MS` (default 2000): longest wait for a pooled connection.
    pub db_timeout: Duration,
    /// `AMQP_TIMEOUT_MS` (default 5000): longest wait to connect to RabbitMQ
    /// and for any broker operation during setup.
    pub amqp_timeout: Duration,
    /// `STARTUP_TIMEOUT_MS` (default 60000): how long to keep retrying the
    /// database for migrations at startup before giving up.
    pub startup_timeout: Duration,
    /// `IDEMPOTENCY_KEY_TTL` (default `24h`): how long an `Idempotency-Key`
    /// stays bound to its request. The producer treats an older binding
    /// as gone (the key is a new request); the consumer's retention prunes
    /// it. Both read it, so it lives here.
    pub idempotency_key_ttl: Duration,
}

/// By hand, not derived: `DATABASE_URL` and the AMQP URLs carry passwords
/// (settings are printed in logs and panics).
impl std::fmt::Debug for CommonSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonSettings")
            .field("amqp_nodes", &self.amqp_nodes)
            .field("amqp_url_redacted", &self.amqp_url_redacted)
            .field("database_url", &crate::redact::url(&self.database_url))
            .field("topology_prefix", &self.topology_prefix)
            .field("kinds", &self.kinds)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout", &self.db_timeout)
            .field("amqp_timeout", &self.amqp_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("idempotency_key_ttl", &self.idempotency_key_ttl)
            .finish()
    }
}

impl CommonSettings {
    /// Read the shared settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let amqp_url = env.required("AMQP_URL")?;
        let amqp_tls = crate::tls::AmqpTls::from_files(
            env.raw("AMQP_TLS_CA_FILE")?,
            env.raw("AMQP_TLS_CERT_FILE")?,
            env.raw("AMQP_TLS_KEY_FILE")?,
        )?;
        let amqp_nodes = crate::amqp::Nodes::parse(&amqp_url)
            .map_err(|e| ConfigError::new("AMQP_URL", e.to_string()))?
            .with_tls(&amqp_tls);
        crate::tls::check_nodes(amqp_nodes.tls_count(), amqp_nodes.len(), &amqp_tls)?;
        let database_url = env.required("DATABASE_URL")?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        let topology_prefix = env.string_or("TOPOLOGY_PREFIX", "")?;
        let kinds = crate::kind::Kinds::parse(&env.string_or("KINDS", crate::kind::DEFAULT)?)
            .map_err(|e| ConfigError::new("KINDS", e.to_string()))?
            .with_shards(&env.string_or("KIND_SHARDS", "")?)
            .map_err(|e| ConfigError::new("KIND_SHARDS", e.to_string()))?;
        Ok(Self {
            amqp_url_redacted: amqp_url
                .split(',')
                .map(|u| crate::amqp::redact(u.trim()))
                .collect::<Vec<_>>()
                .join(","),
            amqp_nodes,
            database_url,
            topology_prefix,
            kinds,
            db_pool_size: env.number_in("DB_POOL_SIZE", 8, 1..=1000)?,
            db_timeout: env.millis_or("DB_TIMEOUT_MS", 2000)?,
            amqp_timeout: env.millis_or("AMQP_TIMEOUT_MS", 5000)?,
            startup_timeout: env.millis_or("STARTUP_TIMEOUT_MS", 60_000)?,
            idempotency_key_ttl: env.duration_or(
                "IDEMPOTENCY_KEY_TTL",
                Duration::from_secs(86_400),
                Duration::from_secs(1),
            )?,
        })
    }

    /// The topology these settings name.
    pub fn topology(&self) -> crate::Topology {
        crate::Topology::with_prefix(&self.topology_prefix).with_kinds(&self.kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_names_the_variable() {
        let env = Env::from_pairs([("OTHER", "x")]);
        let err = env.required("AMQP_URL").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: AMQP_URL: is required but not set"
        );
    }

    #[test]
    fn bad_number_names_the_variable_and_value() {
        let env = Env::from_pairs([("PREFETCH", "lots")]);
        let err = env.parse_or::<u16>("PREFETCH", 10).unwrap_err();
        assert_eq!(err.var, "PREFETCH");
        assert!(err.reason.contains("\"lots\""), "{}", err.reason);
    }

    #[test]
    fn out_of_range_is_rejected_and_defaults_apply() {
        let env = Env::from_pairs([("BATCH_SIZE", "0")]);
        assert!(env.number_in("BATCH_SIZE", 500u32, 1..=10_000).is_err());
        assert_eq!(env.number_in("UNSET", 500u32, 1..=10_000).unwrap(), 500);
        assert_eq!(
            env.millis_or("UNSET", 20).unwrap(),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn common_settings_validate_urls() {
        let ok = Env::from_pairs([
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("DATABASE_URL", "postgres://root@127.0.0.1/test"),
        ]);
        let s = CommonSettings::from_env(&ok).unwrap();
        assert_eq!(s.amqp_url_redacted, "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(s.topology().store_queue, "messages.store");

        let bad = Env::from_pairs([
            ("AMQP_URL", "amqp://127.0.0.1"),
            ("DATABASE_URL", "mysql://x"),
        ]);
        assert_eq!(
            CommonSettings::from_env(&bad).unwrap_err().var,
            "DATABASE_URL"
        );
    }

    #[test]
    fn debug_never_prints_the_passwords() {
        let env = Env::from_pairs([
            (
                "AMQP_URL",
                "amqp://app:amqp-secret@rabbit-1:5672/%2f,amqp://app:amqp-secret@rabbit-2:5672/%2f",
            ),
            (
                "DATABASE_URL",
                "postgres://app:db-secret@db:5432/pipeline?sslmode=require&password=db-secret",
            ),
        ]);
        let printed = format!("{:?}", CommonSettings::from_env(&env).unwrap());
        assert!(!printed.contains("amqp-secret"), "{printed}");
        assert!(!printed.contains("db-secret"), "{printed}");
        // Still useful for debugging: where, and as whom.
        for shown in [
            "rabbit-1:5672",
            "rabbit-2:5672",
            "app",
            "db:5432/pipeline",
            "sslmode=require",
        ] {
            assert!(printed.contains(shown), "{shown} missing from {printed}");
        }
    }

    #[test]
    fn amqp_tls_settings_are_read_and_checked_against_the_urls() {
        let ca = format!("{}/testdata/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
        let with = |url: &str| {
            CommonSettings::from_env(&Env::from_pairs([
                ("AMQP_URL", url),
                ("DATABASE_URL", "postgres://db/x"),
                ("AMQP_TLS_CA_FILE", &ca),
            ]))
        };
        let s = with("amqps://u:p@rabbit:5671/%2f").unwrap();
        assert_eq!(s.amqp_nodes.tls_count(), 1);
        assert_eq!(
            with("amqp://u:p@rabbit:5672/%2f").unwrap_err().var,
            "AMQP_URL"
        );
    }

    #[test]
    fn durations_are_read_in_one_syntax() {
        let env = Env::from_pairs([("A", "30d"), ("B", "1s"), ("C", "forever"), ("D", "soon")]);
        let min = Duration::from_secs(2);
        assert_eq!(
            env.duration_or("A", min, min).unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(env.duration_or("B", min, min).unwrap_err().var, "B");
        assert_eq!(env.duration_or("UNSET", min, min).unwrap(), min);
        assert_eq!(env.duration_or_forever("C", min).unwrap(), None);
        assert_eq!(env.duration_or_forever("UNSET", min).unwrap(), None);
        assert_eq!(
            env.duration_or_forever("A", min).unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        let err = env.duration_or("D", min, min).unwrap_err();
        assert!(err.reason.contains("\"soon\""), "{}", err.reason);
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let env = Env::from_pairs([("DATABASE_URL", "  ")]);
        assert!(env.required("DATABASE_URL").is_err());
    }
}
