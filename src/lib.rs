//! Strata: a persistence daemon for graph-shaped application data.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`config`]: one typed configuration (defaults < file < environment).
//! - [`domain`]: entities, relationships, versions, errors; no I/O.
//! - [`store`]: the `Store` trait and its backends (`store::sqlite`).
//! - [`crdt`]: Yjs documents: validation, state, compaction, y-websocket sync.
//! - [`blob`]: the blob store (local directory or S3) for snapshots.
//! - [`graph`]: graph parameter rules and shortest paths over the store.
//! - [`search`]: query terms and searchable text, shared by the backends.
//! - [`jobs`]: scheduled upkeep with a run history.
//! - [`api`]: the axum HTTP layer; knows nothing of SQL.
//! - [`lifecycle`]: the cancellation token and task tracker that stop background work.
//! - [`server`]: wiring: open the store, resolve the admin key, serve, shut down in order.

pub mod api;
pub mod blob;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crdt;
pub mod digest;
pub mod domain;
pub mod graph;
pub mod jobs;
pub mod lifecycle;
pub mod search;
pub mod server;
pub mod store;
