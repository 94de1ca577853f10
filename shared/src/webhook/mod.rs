//! Webhooks: which callback URLs may be called at all, how each
//! destination's requests are signed, and the categories clients are told
//! when an attempt fails. The producer checks a URL at the door (a bad one
//! is a 400) and hands out destination keys; the consumer checks the URL
//! again when delivering, because a host name can resolve somewhere else
//! by then (DNS rebinding), and signs with the same derivation.
//!
//! Leaves: `address` (the SSRF filter: addresses never reached),
//! `allowed` (`WEBHOOK_ALLOWED_HOSTS`), `origin` (a destination's
//! `scheme://host:port`), `failure` (error categories). Above them:
//! `target` → `address`, `allowed`, `failure` (checking a callback URL and
//! resolving its host); `signing` → `origin` (Standard Webhooks signatures
//! with a key per destination); `settings` → `allowed`, `signing` and the
//! crate's `config` (the `WEBHOOK_*` settings both binaries read).

pub mod address;
pub mod allowed;
pub mod failure;
pub mod origin;
pub mod settings;
pub mod signing;
pub mod target;

pub use address::is_forbidden;
pub use allowed::{AllowedHosts, AllowedHostsError, DEFAULT_PORTS};
pub use failure::Failure;
pub use origin::{Origin, OriginError};
pub use signing::{
    DestinationKeys, SecretError, Signer, SigningKeys, ID_HEADER, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
pub use target::{check_url, check_url_resolving, resolve_checked, UrlError, MAX_URL_LEN};
