//! What a retention run did.

use std::collections::BTreeMap;

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another process holds the lock: it prunes this round.
    Skipped,
    /// Every rule ran to the end.
    Pruned(Report),
    /// Stopped by shutdown before the end: what was done so far.
    Interrupted(Report),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows deleted per rule.
    pub deleted: BTreeMap<&'static str, usize>,
    /// Partitions of `messages` created (ahead of their time).
    pub created: Vec<String>,
    /// Partitions of `messages` dropped (past `MESSAGE_RETENTION`).
    pub dropped: Vec<String>,
}
