//! Retention (issue 18): every table bounded. Each kind of data is kept for
//! its own time (`rules`), and one process at a time deletes what is
//! older, in bounded batches, on its own schedule (`schedule`, `task`).
//! The consumer runs the rules of the tables it writes; the producer the
//! idempotency keys' (the only table its role may prune).
//!
//! * `task` → `rules`, `partitions`, `schedule`, `metrics`, `outcome`,
//!   `db`: the loop, the lock, the batches.
//! * `partitions` → `db`, `config`: the time partitions of `messages`,
//!   created ahead and dropped whole past `MESSAGE_RETENTION`.
//! * `rules` → `db`: each kind of data, its age and its delete.
//! * `schedule` → `config`: `RETENTION_INTERVAL`, `RETENTION_BATCH`.
//! * `metrics` → `outcome`, `db`, `metrics`: the last run and the tables'
//!   figures, for `/metrics`.
//! * `outcome`: what a run did.
//! * `settings` → `schedule`, `partitions`, `rules`, `config`, `duration`:
//!   every age, read by both binaries.

pub mod metrics;
pub mod outcome;
pub mod partitions;
pub mod rules;
pub mod schedule;
pub mod settings;
pub mod task;

pub use metrics::RetentionMetrics;
pub use outcome::{Outcome, Report};
pub use partitions::{MessagePartitions, PartitionSize};
pub use rules::Rule;
pub use schedule::Schedule;
pub use settings::RetentionSettings;
pub use task::Retention;
