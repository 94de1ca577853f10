//! Migrating the classic `messages.dead` of before issue 17 to the quorum
//! queue (`shared::dead_queue_migration`), in the background: a deep queue
//! takes a while to move, and the store queues must not wait for it.
//!
//! On a connection of its own, so the lock it holds (an exclusive queue)
//! and the channels the broker closes on a refusal touch nothing of the
//! session. Consumers migrate, producers do not: a deployment has consumers
//! whenever dead letters are made and indexed. Several consumers starting
//! at once all try; one holds the lock, the others see `Busy` and go on.

use shared::amqp::Nodes;
use shared::dead_queue_migration::{self, Outcome};
use shared::Topology;
use std::time::Duration;

/// Connect (to `node` if it answers, the session's) and migrate; logs what
/// happened. Ends the connection either way. Stopping it midway (the
/// session ends) loses nothing: the next session resumes.
pub async fn run(nodes: Nodes, node: String, timeout: Duration, topology: Topology) {
    let name = shared::amqp::connection_name("consumer-dead-queue-migration");
    let connection = match nodes.connect_near(&node, &name, timeout).await {
        Ok((connection, _node)) => connection,
        Err(e) => {
            log::warn!(
                "dead-letter queue migration: cannot connect: {e}; the next session retries"
            );
            return;
        }
    };
    let plan = topology.dead_queue_migration();
    log::info!(
        "{} is the classic queue of before (or its migration was interrupted): moving it to a quorum queue",
        plan.queue
    );
    match dead_queue_migration::run(&connection, &plan).await {
        Ok(Outcome::Done { moved }) => log::info!(
            "{} is a quorum queue now ({moved} dead letters moved)",
            plan.queue
        ),
        Ok(Outcome::Busy) => log::info!(
            "another process is migrating {}; this one goes on",
            plan.queue
        ),
        Err(e) => log::warn!(
            "dead-letter queue migration stopped: {e}; every letter is in {} or {}, and the next \
             session resumes",
            plan.queue,
            plan.holding
        ),
    }
    let _ = tokio::time::timeout(timeout, connection.close(200, "migrated".into())).await;
}
