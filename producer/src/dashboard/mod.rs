//! The operator's dashboard: the page and its assets (`page`), the live
//! numbers (`overview`), the latest messages and one message's story
//! (`messages`), scheduled messages: how many wait, the soonest, and the
//! page of one (`scheduled`), and the id an `Idempotency-Key` stands for
//! (`key`). Its data comes with the same tokens as any client's (the route
//! table says which).

pub mod key;
pub mod messages;
pub mod overview;
pub mod page;
pub mod scheduled;
