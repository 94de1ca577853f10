//! A channel of its own for the dead-letter tools, on the publisher's
//! connection: opened, used, and closed again, which hands back to their
//! queues whatever it got and did not ack (so a browse or a search loses
//! nothing and keeps the order).

use lapin::Channel;
use shared::publish::PublishError;

use super::handle::Publisher;

impl Publisher {
    /// Run `work` on a fresh channel, then close the channel (within the
    /// publish timeout: a broker that does not answer the close must not
    /// hold the request). `reason` goes into the close, for the broker's log.
    pub async fn with_channel<T, W>(&self, reason: &str, work: W) -> Result<T, PublishError>
    where
        W: AsyncFnOnce(&Channel) -> T,
    {
        let open = self.inner.current().ok_or(PublishError::NotConnected)?;
        let open = open.connection.create_channel();
        let channel = tokio::time::timeout(self.inner.timeout, open)
            .await
            .map_err(|_| PublishError::Timeout(self.inner.timeout))?
            .map_err(PublishError::Broker)?;
        let result = work(&channel).await;
        let close = channel.close(200, reason.into());
        let _ = tokio::time::timeout(self.inner.timeout, close).await;
        Ok(result)
    }
}
