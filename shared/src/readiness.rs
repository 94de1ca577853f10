//! The `/readyz` answer both binaries give, from the state of their
//! dependencies (each binary finds those out its own way).

/// The broker connection as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Connected and free to publish.
    Up,
    /// Not connected.
    Down,
    /// Connected, but the broker blocks publishing (resource alarm).
    Blocked,
}

impl BrokerState {
    fn as_str(self) -> &'static str {
        match self {
            BrokerState::Up => "up",
            BrokerState::Down => "down",
            BrokerState::Blocked => "blocked",
        }
    }
}

/// Whether ready, and the JSON body saying the state of each dependency.
/// Readiness needs the broker up, and the database only where it is
/// `database_required` (the consumer stores; the producer publishes
/// without it, and reports it only). `node` is the RabbitMQ node
/// (`host:port`) the process is connected to.
pub fn report(
    broker: BrokerState,
    node: Option<String>,
    database: bool,
    database_required: bool,
) -> (bool, serde_json::Value) {
    let ready = broker == BrokerState::Up && (database || !database_required);
    let database = if database { "up" } else { "down" };
    if ready {
        let body = serde_json::json!({
            "status": "ready",
            "broker": broker.as_str(),
            "node": node,
            "database": database,
        });
        (true, body)
    } else {
        (
            false,
            serde_json::json!({
                "error": "not ready",
                "status": "not ready",
                "broker": broker.as_str(),
                "node": node,
                "database": database,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_counts_only_where_required() {
        let (ready, body) = report(BrokerState::Up, Some("n:5672".into()), false, false);
        assert!(ready);
        assert_eq!(body["database"], "down");
        let (ready, body) = report(BrokerState::Up, None, false, true);
        assert!(!ready);
        assert_eq!(body["error"], "not ready");
        assert!(!report(BrokerState::Blocked, None, true, true).0);
    }
}
