//! The change feed's consumers (see `consumer.rs`).

pub mod consumer;

pub use consumer::{Consumer, FeedChange};
