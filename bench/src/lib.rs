//! Measuring tools for the pipeline, shared by the `bench` binary and the
//! `faults`, `cluster`, `soak`, `kinds` and `schedule` binaries (`src/bin/`).
//!
//! # Layout
//!
//! Each module stands alone (none imports another, but `memory` formats
//! with `report`):
//! - `flags`: the `--name value` command lines.
//! - `http`: the lean load generator (C keep-alive connections, paced or
//!   flat out, optionally with a `deliver_at` on each message), recording
//!   latencies and the ids of the 202s.
//! - `rows`: what the load left in PostgreSQL (waiting for the rows, exact
//!   counts, commit latency, the lateness of scheduled messages).
//! - `stages`: the stage limits (the broker alone, for one kind and its
//!   shards too, the database alone), and the pipelined confirmed publish
//!   the `kinds` benchmark queues its backlogs with.
//! - `client`: one attempt of the fault injectors' retrying client, and its
//!   backoff.
//! - `docker`: the docker CLI and a running compose project.
//! - `memory`: resident memory of the processes under test.
//! - `disk`: the database's size on disk over a run, and its flatness.
//! - `report`: the Markdown tables the binaries print.

pub mod client;
pub mod disk;
pub mod docker;
pub mod flags;
pub mod http;
pub mod memory;
pub mod report;
pub mod rows;
pub mod stages;
