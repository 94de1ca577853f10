//! The producer's Prometheus metrics, served by `GET /metrics`.
//!
//! One registry per [`Metrics`] (built in `Application::build`), never the
//! process-global default, so several producers in one test process each
//! count only their own requests.

use std::time::Duration;

use actix_web::http::StatusCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};
use shared::kind::{Kind, Kinds};
use shared::metrics::{labelled_counter, BrokerMetrics, MetricsError, FAST_BUCKETS};

use crate::rates::RateWindow;

/// The endpoint that accepted a message: the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /messages`.
    Single,
    /// `POST /messages/batch`.
    Batch,
    /// `POST /add_message`.
    AddMessage,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Endpoint::Single, Endpoint::Batch, Endpoint::AddMessage];

    fn label(self) -> &'static str {
        match self {
            Endpoint::Single => "single",
            Endpoint::Batch => "batch",
            Endpoint::AddMessage => "add_message",
        }
    }
}

/// Why a submission was refused: the `reason` label. A fixed set, so the
/// label's cardinality stays small whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: malformed or invalid body, bad header.
    BadRequest,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 503: the broker did not confirm (all or part of a batch).
    BrokerUnavailable,
    /// Any other error status (a bug, most likely).
    Other,
}

impl Rejection {
    const ALL: [Rejection; 5] = [
        Rejection::BadRequest,
        Rejection::PayloadTooLarge,
        Rejection::UnsupportedMediaType,
        Rejection::BrokerUnavailable,
        Rejection::Other,
    ];

    /// The rejection an answer with `status` stands for; `None` for a success.
    pub fn from_status(status: StatusCode) -> Option<Self> {
        match status {
            StatusCode::BAD_REQUEST => Some(Rejection::BadRequest),
            StatusCode::PAYLOAD_TOO_LARGE => Some(Rejection::PayloadTooLarge),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Some(Rejection::UnsupportedMediaType),
            StatusCode::SERVICE_UNAVAILABLE => Some(Rejection::BrokerUnavailable),
            s if s.is_client_error() || s.is_server_error() => Some(Rejection::Other),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad_request",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::BrokerUnavailable => "broker_unavailable",
            Rejection::Other => "other",
        }
    }
}

/// The registry and every metric handle; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    accepted: IntCounterVec,
    rejected: IntCounterVec,
    confirm_seconds: Histogram,
    /// 1 while the broker blocks publishing (resource alarm).
    pub broker_blocked: IntGauge,
    /// 1 while the database answers (checked by `/readyz` and each scrape).
    pub database_up: IntGauge,
    /// Connection state, kept by the publisher's supervisor.
    pub broker: BrokerMetrics,
    /// The retention's last run (the idempotency keys the producer prunes).
    pub retention: shared::retention::RetentionMetrics,
    /// Accepted messages per second over the last minutes (the dashboard's
    /// chart; Prometheus keeps only the running total).
    pub accepted_recent: RateWindow,
    /// Scheduled messages: waiting, next due, dispatched and how late.
    pub schedule: crate::schedule::metrics::ScheduleMetrics,
    /// Per configured kind, in `KINDS` order: its series of
    /// `pipeline_producer_messages_accepted_by_kind_total` (resolved once)
    /// and its own recent window (the dashboard's per-kind rates). Only
    /// configured kinds: a label value never comes from a request.
    by_kind: Vec<KindCounts>,
}

/// What is counted for one kind.
struct KindCounts {
    kind: Kind,
    accepted: IntCounter,
    recent: RateWindow,
}

impl Metrics {
    /// A fresh registry with every metric registered. Every label value is
    /// created up front, so each series exists (at 0) from the first scrape
    /// and `rate()` sees its first increment.
    pub fn new(kinds: &Kinds) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let accepted = labelled_counter(
            &registry,
            "pipeline_producer_messages_accepted_total",
            "Messages confirmed by the broker and answered 202, by endpoint \
             (a batch adds each of its confirmed messages).",
            "endpoint",
            Endpoint::ALL.iter().map(|e| e.label()),
        )?;
        let rejected = labelled_counter(
            &registry,
            "pipeline_producer_messages_rejected_total",
            "Message submissions answered with a 4xx or 503, by reason \
             (a batch counts once).",
            "reason",
            Rejection::ALL.iter().map(|r| r.label()),
        )?;
        let confirm_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pipeline_producer_publish_confirm_seconds",
                "Time from publishing a message to the broker's confirm (confirmed messages).",
            )
            .buckets(FAST_BUCKETS.to_vec()),
        )?;
        let accepted_by_kind = labelled_counter(
            &registry,
            "pipeline_producer_messages_accepted_by_kind_total",
            "Messages confirmed by the broker and answered 202, by kind \
             (the configured KINDS; every endpoint together).",
            "kind",
            kinds.all().iter().map(Kind::as_str),
        )?;
        registry.register(Box::new(confirm_seconds.clone()))?;
        let broker_blocked = IntGauge::new(
            "pipeline_broker_blocked",
            "1 while RabbitMQ blocks this producer's publishing (memory or disk alarm): \
             submissions answer 503 at once.",
        )?;
        let database_up = IntGauge::new(
            "pipeline_database_up",
            "1 while PostgreSQL answers (reads need it; accepting messages does not).",
        )?;
        registry.register(Box::new(broker_blocked.clone()))?;
        registry.register(Box::new(database_up.clone()))?;
        let broker = BrokerMetrics::register(&registry)?;
        let retention = shared::retention::RetentionMetrics::register(&registry)?;
        let schedule = crate::schedule::metrics::ScheduleMetrics::register(&registry)?;
        let by_kind = kinds
            .all()
            .iter()
            .map(|kind| KindCounts {
                kind: kind.clone(),
                accepted: accepted_by_kind.with_label_values(&[kind.as_str()]),
                recent: RateWindow::default(),
            })
            .collect();
        Ok(Self {
            registry,
            accepted,
            rejected,
            confirm_seconds,
            broker_blocked,
            database_up,
            broker,
            retention,
            accepted_recent: RateWindow::default(),
            schedule,
            by_kind,
        })
    }

    /// Messages of `kinds` (one entry each) accepted through `endpoint`.
    pub fn record_accepted<'a>(
        &self,
        endpoint: Endpoint,
        kinds: impl IntoIterator<Item = &'a Kind>,
    ) {
        let now = chrono::Utc::now().timestamp();
        // Per kind, in KINDS order: a handful of kinds, so a linear find.
        let mut counts = vec![0u64; self.by_kind.len()];
        let mut n = 0u64;
        for kind in kinds {
            n += 1;
            if let Some(i) = self.by_kind.iter().position(|k| k.kind == *kind) {
                counts[i] += 1;
            }
        }
        for (k, count) in self.by_kind.iter().zip(counts) {
            if count > 0 {
                k.accepted.inc_by(count);
                k.recent.record(now, count);
            }
        }
        self.accepted
            .with_label_values(&[endpoint.label()])
            .inc_by(n);
        self.accepted_recent.record(now, n);
    }

    /// Each configured kind, in `KINDS` order, with its accepted messages
    /// per second over the last minutes.
    pub fn accepted_recent_by_kind(&self) -> impl Iterator<Item = (&Kind, &RateWindow)> {
        self.by_kind.iter().map(|k| (&k.kind, &k.recent))
    }

    /// One submission refused.
    pub fn record_rejected(&self, reason: Rejection) {
        self.rejected.with_label_values(&[reason.label()]).inc();
    }

    /// One message confirmed `elapsed` after it was published.
    pub fn record_confirm(&self, elapsed: Duration) {
        self.confirm_seconds.observe(elapsed.as_secs_f64());
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        shared::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_fixed_reasons() {
        assert_eq!(Rejection::from_status(StatusCode::ACCEPTED), None);
        assert_eq!(
            Rejection::from_status(StatusCode::BAD_REQUEST),
            Some(Rejection::BadRequest)
        );
        assert_eq!(
            Rejection::from_status(StatusCode::SERVICE_UNAVAILABLE),
            Some(Rejection::BrokerUnavailable)
        );
        assert_eq!(
            Rejection::from_status(StatusCode::INTERNAL_SERVER_ERROR),
            Some(Rejection::Other)
        );
    }

    #[test]
    fn every_series_exists_from_the_start() {
        let kinds = Kinds::parse("email").unwrap();
        let metrics = Metrics::new(&kinds).unwrap();
        let email = Kind::parse("email").unwrap();
        let default = Kind::default_kind();
        let sms = Kind::parse("sms").unwrap();
        metrics.record_accepted(Endpoint::Batch, [&email, &default, &email, &sms]);
        metrics.record_accepted(Endpoint::Single, []);
        let text = metrics.render().unwrap();
        assert!(text.contains("pipeline_producer_messages_accepted_total{endpoint=\"batch\"} 4\n"));
        assert!(
            text.contains("pipeline_producer_messages_accepted_by_kind_total{kind=\"email\"} 2\n")
        );
        assert!(text
            .contains("pipeline_producer_messages_accepted_by_kind_total{kind=\"default\"} 1\n"));
        assert!(
            !text.contains("sms"),
            "a kind not configured is no label value"
        );
        assert!(text.contains("pipeline_producer_messages_accepted_total{endpoint=\"single\"} 0\n"));
        assert!(text.contains(
            "pipeline_producer_messages_rejected_total{reason=\"payload_too_large\"} 0\n"
        ));
        assert!(text.contains("pipeline_producer_publish_confirm_seconds_count 0\n"));
        assert!(text.contains("pipeline_broker_connected 0\n"));
    }
}
