//! Measuring tools for the pipeline: the HTTP load generator, row checks and
//! stage limits behind the `bench` binary, shared with the `faults` binary.

pub mod flags;
pub mod http;
pub mod rows;
pub mod stages;
