//! What both binaries export to Prometheus under the same names: the state
//! of their broker connection, and the text exposition of a registry.
//!
//! Each process builds its own [`prometheus::Registry`] (never the global
//! default one), so several producers and consumers can live in one test
//! process without their metrics colliding.

use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The `Content-Type` of a `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Why metrics could not be registered or rendered.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// A counter with one label, registered in `registry`, with the series of
/// every value of `values` created at 0: each exists from the first scrape,
/// so `rate()` sees its first increment. Other values appear on first use.
pub fn labelled_counter<'a>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<IntCounterVec, MetricsError> {
    let counter = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(counter.clone()))?;
    for value in values {
        counter.with_label_values(&[value]);
    }
    Ok(counter)
}

/// `pipeline_broker_connected`, `pipeline_broker_reconnects_total` and
/// `pipeline_broker_node`.
#[derive(Clone)]
pub struct BrokerMetrics {
    connected: IntGauge,
    reconnects: IntCounter,
    node: IntGaugeVec,
    /// The node of [`Self::set_node`], for `/readyz`.
    current: Arc<Mutex<Option<String>>>,
}

impl BrokerMetrics {
    /// Create both metrics and register them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let connected = IntGauge::new(
            "pipeline_broker_connected",
            "1 while this process has a working connection to RabbitMQ, else 0.",
        )?;
        let reconnects = IntCounter::new(
            "pipeline_broker_reconnects_total",
            "Connections to RabbitMQ established after the first one.",
        )?;
        let node = IntGaugeVec::new(
            Opts::new(
                "pipeline_broker_node",
                "1 for the RabbitMQ node (host:port) this process is connected to.",
            ),
            &["node"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        registry.register(Box::new(node.clone()))?;
        Ok(Self {
            connected,
            reconnects,
            node,
            current: Arc::default(),
        })
    }

    /// Record which node (`host:port`) the process is connected to, if any.
    pub fn set_node(&self, node: Option<&str>) {
        self.node.reset();
        if let Some(node) = node {
            self.node.with_label_values(&[node]).set(1);
        }
        let mut current = match self.current.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = node.map(str::to_owned);
    }

    /// What [`Self::set_node`] last recorded.
    pub fn node(&self) -> Option<String> {
        match self.current.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Record whether the broker connection is usable now.
    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// What [`Self::set_connected`] last recorded.
    pub fn is_connected(&self) -> bool {
        self.connected.get() == 1
    }

    /// A connection after the first one was established.
    pub fn record_reconnect(&self) {
        self.reconnects.inc();
    }
}

/// Every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, MetricsError> {
    Ok(TextEncoder::new().encode_to_string(&registry.gather())?)
}

/// Histogram buckets (seconds) for a latency between 0.5 ms and 5 s, such
/// as a publisher confirm or a batch insert.
pub const FAST_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labelled_counter_shows_every_given_value_at_zero() {
        let registry = Registry::new();
        let counter =
            labelled_counter(&registry, "t_total", "A test.", "reason", ["a", "b"]).unwrap();
        let text = render(&registry).unwrap();
        assert!(text.contains("t_total{reason=\"a\"} 0\n"), "{text}");
        assert!(text.contains("t_total{reason=\"b\"} 0\n"), "{text}");
        counter.with_label_values(&["c"]).inc();
        let text = render(&registry).unwrap();
        assert!(text.contains("t_total{reason=\"c\"} 1\n"), "{text}");
    }

    #[test]
    fn broker_metrics_render() {
        let registry = Registry::new();
        let broker = BrokerMetrics::register(&registry).unwrap();
        broker.set_connected(true);
        broker.record_reconnect();
        assert!(broker.is_connected());
        let text = render(&registry).unwrap();
        assert!(text.contains("pipeline_broker_connected 1\n"), "{text}");
        assert!(
            text.contains("pipeline_broker_reconnects_total 1\n"),
            "{text}"
        );
        // A second registry is independent: no global state.
        let other = Registry::new();
        BrokerMetrics::register(&other).unwrap();
        assert!(render(&other)
            .unwrap()
            .contains("pipeline_broker_connected 0\n"));
    }
}
