//! The webhook settings both binaries read, read one way: the producer
//! checks callbacks and hands out keys with what the consumer delivers and
//! signs with.

use crate::config::{ConfigError, Env};
use crate::webhook::allowed::AllowedHosts;
use crate::webhook::signing::SigningKeys;

/// `WEBHOOK_SECRET` (the master secret) and `WEBHOOK_PREVIOUS_SECRET` (the
/// one before it, during a rotation); `None` when neither is set.
pub fn signing_keys(env: &Env) -> Result<Option<SigningKeys>, ConfigError> {
    let current = env.raw("WEBHOOK_SECRET")?;
    let previous = env.raw("WEBHOOK_PREVIOUS_SECRET")?;
    match (current, previous) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::new(
            "WEBHOOK_PREVIOUS_SECRET",
            "is set without WEBHOOK_SECRET (set the new secret beside the previous one)",
        )),
        (Some(current), previous) => SigningKeys::new(&current, previous.as_deref())
            .map(Some)
            .map_err(|e| ConfigError::new("WEBHOOK_SECRET", e.to_string())),
    }
}

/// `WEBHOOK_ALLOWED_HOSTS` (default none).
pub fn allowed_hosts(env: &Env) -> Result<AllowedHosts, ConfigError> {
    AllowedHosts::parse(&env.string_or("WEBHOOK_ALLOWED_HOSTS", "")?)
        .map_err(|e| ConfigError::new("WEBHOOK_ALLOWED_HOSTS", e.to_string()))
}
