//! Publishing: one envelope, or many pipelined, each awaiting the broker's
//! confirm. `Ok` means the broker has taken responsibility for the message
//! (for a quorum queue: written to a majority and fsynced).

use std::sync::Arc;
use std::time::Instant;

use shared::publish::PublishError;
use shared::Envelope;

use super::handle::{Link, Publisher};

impl Publisher {
    /// The live link, unless there is none or the broker blocks it: a
    /// blocked connection's frames would only pile up in lapin's unbounded
    /// queue while the request waits for a confirm that cannot come, so
    /// the answer is an immediate 503 instead.
    fn usable(&self) -> Result<Arc<Link>, PublishError> {
        let link = self.inner.current().ok_or(PublishError::NotConnected)?;
        if link.is_blocked() {
            return Err(PublishError::Blocked);
        }
        Ok(link)
    }

    /// Publish one envelope and wait for the broker's confirm.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        let link = self.usable()?;
        let started = Instant::now();
        let blocked = self.inner.blocked.notified();
        let body = envelope.to_body();
        // `default`: the `messages` exchange, as before kinds.
        let (exchange, routing_key) = self
            .inner
            .topology
            .publish_target(&envelope.kind, envelope.id);
        let result = tokio::select! {
            result = shared::publish::confirmed(
                link.channel(),
                exchange,
                &routing_key,
                &body,
                envelope.properties(),
                self.inner.timeout,
            ) => result,
            _ = blocked => Err(PublishError::Blocked),
        };
        if result.is_ok() {
            self.inner.metrics.record_confirm(started.elapsed());
        }
        if let Err(PublishError::Broker(_)) = &result {
            // The channel or connection is gone: let the supervisor rebuild.
            self.inner.broken.notify_one();
        }
        result
    }

    /// Publish many envelopes, pipelined: every message is
    /// sent before any confirm is awaited, then each confirm is awaited.
    /// The whole batch shares one publish timeout. The result for item `i`
    /// says whether envelope `i` was confirmed.
    pub async fn publish_many(&self, envelopes: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let link = match self.usable() {
            Ok(link) => link,
            Err(e) => {
                let kind = matches!(e, PublishError::Blocked);
                return envelopes
                    .iter()
                    .map(|_| {
                        Err(if kind {
                            PublishError::Blocked
                        } else {
                            PublishError::NotConnected
                        })
                    })
                    .collect();
            }
        };
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut pending = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let started = Instant::now();
            let (exchange, routing_key) = self
                .inner
                .topology
                .publish_target(&envelope.kind, envelope.id);
            let sent = tokio::time::timeout_at(
                deadline,
                // Round-robin over the channels: each channel is one process
                // on the broker, so spreading a batch lets it work in parallel.
                link.channel().basic_publish(
                    exchange.into(),
                    routing_key.as_ref().into(),
                    shared::publish::OPTIONS,
                    &envelope.to_body(),
                    envelope.properties(),
                ),
            )
            .await;
            pending.push(match sent {
                Ok(Ok(confirm)) => Ok((confirm, started)),
                Ok(Err(e)) => Err(PublishError::Broker(e)),
                Err(_) => Err(PublishError::Timeout(self.inner.timeout)),
            });
        }
        let confirms = pending.into_iter().map(|sent| async move {
            let (confirm, started) = sent?;
            let blocked = self.inner.blocked.notified();
            let confirm = async {
                tokio::select! {
                    confirmation = confirm => Some(confirmation),
                    _ = blocked => None,
                }
            };
            match tokio::time::timeout_at(deadline, confirm).await {
                Err(_) => Err(PublishError::Timeout(self.inner.timeout)),
                Ok(None) => Err(PublishError::Blocked),
                Ok(Some(Err(e))) => Err(PublishError::Broker(e)),
                Ok(Some(Ok(confirmation))) => {
                    shared::publish::check(confirmation)?;
                    self.inner.metrics.record_confirm(started.elapsed());
                    Ok(())
                }
            }
        });
        let results = futures_util::future::join_all(confirms).await;
        if results
            .iter()
            .any(|r| matches!(r, Err(PublishError::Broker(_))))
        {
            self.inner.broken.notify_one();
        }
        results
    }
}
