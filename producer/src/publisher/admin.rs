//! A channel of its own for the dead-letter tools, on the publisher's
//! connection.

use lapin::Channel;

use super::handle::Publisher;
use shared::publish::PublishError;

impl Publisher {
    /// A fresh channel on the current connection, for work that needs its
    /// own channel (browsing or moving dead letters). Closing it returns
    /// anything it got and did not ack to its queue.
    pub async fn open_channel(&self) -> Result<Channel, PublishError> {
        let link = self.inner.current().ok_or(PublishError::NotConnected)?;
        let open = link.connection.create_channel();
        tokio::time::timeout(self.inner.timeout, open)
            .await
            .map_err(|_| PublishError::Timeout(self.inner.timeout))?
            .map_err(PublishError::Broker)
    }
}
