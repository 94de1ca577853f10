//! The resolver every webhook connection goes through: it resolves and
//! drops the addresses a webhook may not reach
//! ([`shared::webhook::resolve_checked`], the same check as at the door),
//! so the check and the connection use the same lookup (no window for DNS
//! rebinding).

use std::net::SocketAddr;
use std::time::Duration;

use shared::webhook::AllowedHosts;

/// Plugged into the deliverer's `reqwest::Client`.
pub struct GuardedResolver {
    /// `WEBHOOK_ALLOWED_HOSTS`.
    pub allowed: AllowedHosts,
    /// The longest lookup.
    pub timeout: Duration,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allowed, timeout) = (self.allowed.clone(), self.timeout);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                shared::webhook::resolve_checked(name.as_str(), 0, &allowed, timeout).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
