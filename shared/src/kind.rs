//! Kinds of work: what a kind name may be, the configured set (`KINDS`),
//! and how a request's `kind` is checked against it. The producer refuses
//! an unknown kind at the door; the topology gives each configured kind a
//! queue of its own; the consumer records the kind of the queue it took a
//! message from.
//!
//! The `default` kind is always configured: it is `messages.store`, the one
//! queue of every deployment before kinds existed, so an existing
//! deployment and every client that sends no `kind` are unchanged.

use std::sync::{Arc, LazyLock};

/// The kind of a message that names none.
pub const DEFAULT: &str = "default";

/// Header carrying a message's kind when it is not `default`: set by the
/// producer and by the consumer's dead-letter and retry copies, read by
/// the redrive (so a message goes back to its kind's queue).
pub const KIND_HEADER: &str = "x-kind";

/// Longest kind name (the pattern `[a-z0-9][a-z0-9_-]{0,62}`).
pub const MAX_LEN: usize = 63;

/// A well-formed kind name. Cheap to clone (shared), because every
/// envelope of a kind carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(Arc<str>);

/// Why a kind is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// Not a string.
    #[error("kind must be a string")]
    NotAString,
    /// Does not match `[a-z0-9][a-z0-9_-]{0,62}`.
    #[error("kind {given:?} is malformed (lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters); configured kinds: {configured}")]
    Malformed {
        /// What was sent (cut to a readable length).
        given: String,
        /// The configured kinds, comma-separated.
        configured: String,
    },
    /// Well formed, but not configured.
    #[error("kind {given:?} is not configured; configured kinds: {configured}")]
    Unknown {
        /// What was sent.
        given: String,
        /// The configured kinds, comma-separated.
        configured: String,
    },
}

/// Whether `name` matches `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn well_formed(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// The one `default` kind every envelope without a kind shares: a
/// reference count, not an allocation, per message.
static DEFAULT_KIND: LazyLock<Kind> = LazyLock::new(|| Kind(Arc::from(DEFAULT)));

impl Kind {
    /// The `default` kind.
    pub fn default_kind() -> Kind {
        DEFAULT_KIND.clone()
    }

    /// A kind name, if well formed.
    pub fn parse(name: &str) -> Option<Kind> {
        well_formed(name).then(|| Kind(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `default` kind.
    pub fn is_default(&self) -> bool {
        &*self.0 == DEFAULT
    }
}

impl Default for Kind {
    fn default() -> Self {
        Kind::default_kind()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Kind::parse(&name).ok_or_else(|| serde::de::Error::custom("malformed kind"))
    }
}

/// Why `KINDS` or `KIND_SHARDS` is refused; each names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindsError {
    /// A `KINDS` entry that is not a kind name.
    #[error("{0:?} is not a kind name ([a-z0-9][a-z0-9_-]{{0,62}})")]
    NotAName(String),
    /// A `KIND_SHARDS` entry without its `:`.
    #[error("{0:?} is not <kind>:<shards>")]
    NotAPair(String),
    /// A shard count out of 1 to [`MAX_SHARDS`].
    #[error("{0:?}: shards must be 1 to {MAX_SHARDS}")]
    Shards(String),
    /// A `KIND_SHARDS` entry for a kind `KINDS` does not list.
    #[error("{entry:?}: not one of KINDS ({configured})")]
    NotConfigured {
        /// The entry as written.
        entry: String,
        /// The configured kinds, comma-separated.
        configured: String,
    },
    /// `default:N` with N > 1.
    #[error("the default kind (messages.store) cannot be sharded")]
    DefaultSharded,
}

/// The configured kinds (`KINDS`), `default` always among them, in the
/// order given (`default` first if it was not given), each with its number
/// of shards (`KIND_SHARDS`, 1 unless said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kinds(Vec<Kind>, Vec<u16>);

impl Default for Kinds {
    fn default() -> Self {
        Kinds(vec![Kind::default_kind()], vec![1])
    }
}

/// Most shards of one kind.
pub const MAX_SHARDS: u16 = 64;

impl Kinds {
    /// Parse a comma-separated list (`default,email,profile`); `Err` names
    /// the first malformed entry.
    pub fn parse(list: &str) -> Result<Kinds, KindsError> {
        let mut kinds = Kinds::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = Kind::parse(name).ok_or_else(|| KindsError::NotAName(name.to_owned()))?;
            if !kinds.0.contains(&kind) {
                kinds.0.push(kind);
                kinds.1.push(1);
            }
        }
        Ok(kinds)
    }

    /// The same kinds with the shards of `spec` (`KIND_SHARDS`:
    /// `email:4,profile:2`); `Err` names what is wrong. The `default` kind
    /// is `messages.store`, one queue: it cannot be sharded (give the hot
    /// traffic a kind of its own).
    pub fn with_shards(mut self, spec: &str) -> Result<Kinds, KindsError> {
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, n) = entry
                .split_once(':')
                .ok_or_else(|| KindsError::NotAPair(entry.to_owned()))?;
            let n: u16 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_SHARDS).contains(n))
                .ok_or_else(|| KindsError::Shards(entry.to_owned()))?;
            let i = self
                .0
                .iter()
                .position(|k| k.as_str() == name.trim())
                .ok_or_else(|| KindsError::NotConfigured {
                    entry: entry.to_owned(),
                    configured: self.names(),
                })?;
            if self.0[i].is_default() && n > 1 {
                return Err(KindsError::DefaultSharded);
            }
            self.1[i] = n;
        }
        Ok(self)
    }

    /// How many shards (queues) `kind` has: 1 unless `KIND_SHARDS` says.
    pub fn shards(&self, kind: &Kind) -> u16 {
        self.0
            .iter()
            .position(|k| k == kind)
            .map_or(1, |i| self.1[i])
    }

    /// Every configured kind.
    pub fn all(&self) -> &[Kind] {
        &self.0
    }

    /// The configured kind named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.0.iter().find(|k| k.as_str() == name)
    }

    /// The names, comma-separated (for errors and logs).
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(Kind::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Check a request's `kind` field: absent or null is `default`; a
    /// string must be a configured kind.
    pub fn of_json(&self, value: Option<&serde_json::Value>) -> Result<Kind, KindError> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Kind::default_kind()),
            Some(serde_json::Value::String(name)) => self.check(name),
            Some(_) => Err(KindError::NotAString),
        }
    }

    /// Check a kind name against the configured set.
    pub fn check(&self, name: &str) -> Result<Kind, KindError> {
        if !well_formed(name) {
            return Err(KindError::Malformed {
                given: name.chars().take(80).collect(),
                configured: self.names(),
            });
        }
        self.get(name).cloned().ok_or_else(|| KindError::Unknown {
            given: name.to_owned(),
            configured: self.names(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_enforced() {
        for ok in [
            "default",
            "email",
            "transcode-4k",
            "a",
            "9_x",
            &"a".repeat(63),
        ] {
            assert!(well_formed(ok), "{ok}");
        }
        for bad in ["", "Email", "-x", "_x", "a.b", "a b", "é", &"a".repeat(64)] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn default_is_always_configured_and_errors_name_the_kinds() {
        let kinds = Kinds::parse("email, profile,email").unwrap();
        assert_eq!(kinds.names(), "default, email, profile");
        assert_eq!(
            kinds.of_json(None).unwrap(),
            Kind::default_kind(),
            "absent is default"
        );
        let err = kinds.check("sms").unwrap_err().to_string();
        assert!(err.contains("default, email, profile"), "{err}");
        let err = kinds.check("SMS").unwrap_err().to_string();
        assert!(err.contains("malformed") && err.contains("email"), "{err}");
        assert_eq!(
            kinds.of_json(Some(&serde_json::json!(3))),
            Err(KindError::NotAString)
        );
        assert!(Kinds::parse("ok,Not.Ok").is_err());
    }

    #[test]
    fn shards_are_checked() {
        let kinds = Kinds::parse("email,profile").unwrap();
        let sharded = kinds.clone().with_shards("email:4").unwrap();
        assert_eq!(sharded.shards(&Kind::parse("email").unwrap()), 4);
        assert_eq!(sharded.shards(&Kind::parse("profile").unwrap()), 1);
        for bad in ["email", "email:0", "email:65", "sms:2", "default:2"] {
            assert!(kinds.clone().with_shards(bad).is_err(), "{bad}");
        }
        // Each error names the entry, as the settings' errors did before.
        assert_eq!(
            kinds.clone().with_shards("sms:2").unwrap_err().to_string(),
            "\"sms:2\": not one of KINDS (default, email, profile)"
        );
        assert_eq!(
            Kinds::parse("ok,Not.Ok").unwrap_err().to_string(),
            "\"Not.Ok\" is not a kind name ([a-z0-9][a-z0-9_-]{0,62})"
        );
    }
}
