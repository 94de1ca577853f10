//! Handing dead letters that were only looked at back to the dead-letter
//! queue, keeping the queue's order.
//!
//! `messages.dead` is a quorum queue. A letter handed back there goes to
//! the tail of its queue of returned letters, which is delivered before
//! the rest; closing the channel instead returns them in an order of the
//! queue's choosing (RabbitMQ 3.10 shuffled 40 of them). So the order holds
//! only if a reader hands back, one by one and oldest first, *every* letter
//! it can see up to [`SCAN`]: the returned letters then are again the
//! queue's first ones, in order, followed by those never handed out. A
//! reader that looked at a few and handed them back would move them behind
//! the letters returned before (the queue's delivery limit keeps RabbitMQ
//! 4.x from putting them behind everything instead). Browse and redrive-one
//! therefore read on to [`SCAN`] letters (or the end) before handing back.

use std::time::Duration;

use lapin::options::BasicNackOptions;
use lapin::Acker;

/// How many letters a reader looks at, at most: the first [`SCAN`] keep
/// their order (see above); a queue longer than that is redriven or purged
/// whole.
pub const SCAN: usize = 10_000;

/// Return every letter of `looked` (oldest first) to the queue, in order,
/// within `timeout`. Nothing to wait for from the broker (basic.nack has no
/// reply). A failure is only logged: closing the channel, which follows,
/// returns the rest anyway (in an order the queue chooses).
pub async fn hand_back(looked: Vec<Acker>, timeout: Duration) {
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    let all = async {
        for acker in looked {
            acker.nack(requeue).await?;
        }
        Ok::<(), lapin::Error>(())
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("dead letters looked at not handed back in order: {e}"),
        Err(_) => log::warn!("dead letters looked at not handed back within {timeout:?}"),
    }
}
