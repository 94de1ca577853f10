//! Retention (issue 18): every table bounded. Each kind of data is kept for
//! its own time (`rules`), and one process at a time deletes what is
//! older, in bounded batches, on its own schedule (`schedule`, `task`).
//! The consumer runs the rules of the tables it writes; the producer the
//! idempotency keys' (the only table its role may prune).
//!
//! * `task` → `rules`, `partitions`, `schedule`, `db`: the loop, the
//!   lock, the batches.
//! * `partitions` → `db`, `config`: the time partitions of `messages`,
//!   created ahead and dropped whole past `MESSAGE_RETENTION`.
//! * `rules` → `db`: each kind of data, its age and its delete.
//! * `schedule` → `config`: `RETENTION_INTERVAL`, `RETENTION_BATCH`.

pub mod partitions;
pub mod rules;
pub mod schedule;
pub mod task;

pub use partitions::{MessagePartitions, PartitionSize};
pub use rules::Rule;
pub use schedule::Schedule;
pub use task::{Outcome, Report, Retention};
