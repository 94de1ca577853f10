//! Messages: one message in and its status out (`single`), a scheduled
//! one cancelled (`cancel`), the stored ones in commit order (`list`), and
//! the Flask + RQ tutorial's endpoint (`tutorial`).

pub mod cancel;
pub mod list;
pub mod single;
pub mod tutorial;
