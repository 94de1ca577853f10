//! Watching the depth of `messages.dead`: the queue has no length limit
//! (a limit would drop dead letters), so a deep queue is reported instead,
//! as `pipeline_dead_letters_queued` and a `/readyz` field, against
//! `DEAD_LETTER_ALERT_DEPTH`.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;

use crate::stats::Stats;

/// How often the depth is asked, and the longest wait for an answer.
const EVERY: Duration = Duration::from_secs(5);

/// Ask the depth of `queue` on `channel` every few seconds, until the
/// channel fails (the session's end).
pub async fn watch(channel: Channel, queue: String, stats: Arc<Stats>) {
    let passive = QueueDeclareOptions {
        passive: true, // only ask; never create or change the queue
        ..QueueDeclareOptions::default()
    };
    loop {
        let asked = channel.queue_declare(queue.as_str().into(), passive, FieldTable::default());
        match tokio::time::timeout(EVERY, asked).await {
            Ok(Ok(q)) => stats.record_dead_letters_queued(q.message_count()),
            Ok(Err(e)) => {
                log::debug!("cannot ask the depth of {queue}: {e}");
                return;
            }
            Err(_) => log::debug!("the depth of {queue} was not answered within {EVERY:?}"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
