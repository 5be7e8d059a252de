//! The change feed's consumers (see `consumer.rs`).

pub mod consumer;
pub mod meili;

pub use consumer::{Consumer, FeedChange};
