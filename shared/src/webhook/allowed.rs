//! `WEBHOOK_ALLOWED_HOSTS`: the destinations an operator opens on purpose.
//!
//! An entry is `host`, `host:port` or `host:*` (IPv6 in brackets:
//! `[::1]:8080`; names and addresses compared without case). Listing a
//! host lets it be, or resolve to, a private or local address; its port
//! part opens ports besides 80 and 443, the only ones webhooks reach
//! otherwise (so that callbacks cannot probe a host's other services).

/// The ports every callback may use.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    /// `host`: 80 and 443 only.
    Default,
    /// `host:port`: that one too.
    One(u16),
    /// `host:*`: any.
    Any,
}

/// The parsed list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<(String, Ports)>);

/// An entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not host, host:port or host:* (IPv6 in brackets: [::1]:8080)")]
pub struct AllowedHostsError {
    entry: String,
}

impl AllowedHosts {
    /// Parse a comma-separated list (spaces ignored).
    pub fn parse(list: &str) -> Result<Self, AllowedHostsError> {
        let mut entries = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || AllowedHostsError {
                entry: raw.to_owned(),
            };
            let lower = raw.to_ascii_lowercase();
            let (host, port) = if let Some(rest) = lower.strip_prefix('[') {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                match after {
                    "" => (host.to_owned(), None),
                    _ => (
                        host.to_owned(),
                        Some(after.strip_prefix(':').ok_or_else(bad)?),
                    ),
                }
            } else {
                match lower.matches(':').count() {
                    0 => (lower.clone(), None),
                    1 => {
                        let (host, port) = lower.split_once(':').ok_or_else(bad)?;
                        (host.to_owned(), Some(port))
                    }
                    // A bare IPv6 address: no port.
                    _ => (lower.clone(), None),
                }
            };
            let ports = match port {
                None => Ports::Default,
                Some("*") => Ports::Any,
                Some(p) => Ports::One(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
            };
            if host.is_empty() {
                return Err(bad());
            }
            entries.push((host, ports));
        }
        Ok(Self(entries))
    }

    /// Whether `host` (as in a URL, IPv6 with or without brackets) is
    /// listed, on any port: it may then be a private or local address.
    pub fn allows_address(&self, host: &str) -> bool {
        let host = bare(host);
        self.0.iter().any(|(h, _)| *h == host)
    }

    /// Whether a callback may use `port` on `host`: 80 and 443 always,
    /// others when an entry of the host opens them.
    pub fn allows_port(&self, host: &str, port: u16) -> bool {
        if DEFAULT_PORTS.contains(&port) {
            return true;
        }
        let host = bare(host);
        self.0.iter().any(|(h, ports)| {
            *h == host
                && match ports {
                    Ports::Default => false,
                    Ports::One(p) => *p == port,
                    Ports::Any => true,
                }
        })
    }
}

fn bare(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_open_addresses_and_ports() {
        let allowed = AllowedHosts::parse(
            "127.0.0.1, [::1]:8080 ,Receiver.Local:*, fd00::1, hooks.example:9000",
        )
        .unwrap();
        assert!(allowed.allows_address("127.0.0.1"));
        assert!(allowed.allows_address("[::1]"));
        assert!(allowed.allows_address("::1"));
        assert!(allowed.allows_address("receiver.local"));
        assert!(allowed.allows_address("[fd00::1]"));
        assert!(!allowed.allows_address("127.0.0.2"));
        // Ports: 80 and 443 for anyone; more only where listed.
        assert!(allowed.allows_port("example.com", 80));
        assert!(allowed.allows_port("example.com", 443));
        assert!(!allowed.allows_port("example.com", 8080));
        assert!(!allowed.allows_port("127.0.0.1", 9));
        assert!(allowed.allows_port("[::1]", 8080));
        assert!(!allowed.allows_port("[::1]", 8081));
        assert!(allowed.allows_port("receiver.local", 1));
        assert!(allowed.allows_port("hooks.example", 9000));
        assert!(!allowed.allows_port("fd00::1", 22));
        assert_eq!(AllowedHosts::parse(" , ").unwrap(), AllowedHosts::default());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "host:",
            "host:x",
            "host:0",
            "host:70000",
            "[::1",
            "[::1]8080",
            ":80",
        ] {
            let err = AllowedHosts::parse(&format!("ok.example, {bad}")).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
