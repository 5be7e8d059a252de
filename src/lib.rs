//! Strata: a persistence daemon for graph-shaped application data.
//!
//! Module map (ARCHITECTURE.md has the bird's-eye view and the invariants):
//! - [`config`]: one typed `Config` (defaults < TOML file < `STRATA_*`).
//! - [`clock`]: the one stored time format (fixed-width RFC 3339 UTC).
//! - [`domain`]: plain types (entities, relationships, versions, tenancy,
//!   audit, `WriteOp`), `DomainError`, validation, strict client JSON
//!   (`json`), merge patch / diff (`patch`), the read-only check of user
//!   Cypher (`cypher`), and `rules`: how entities, relationships, version
//!   history, document logs, walks and the audit trail change, as pure
//!   functions the backends load for and persist from; no I/O.
//! - [`store`]: one trait per concern (`TenancyStore`, `KeyStore`,
//!   `AuditStore`, `EntityStore`, `ChangeStore`, `GraphStore`, `SearchStore`, `DocStore`;
//!   `Store` is all of them and the store's life); the layers every caller
//!   gets (`checked`: refuses NUL text; `cached`: the entity cache over any
//!   backend), `cursor`, `migrate`, and two backends with the same files
//!   per concern: `store::sqlite` (embedded: writer thread with group
//!   commit, reader pool, FTS5) and `store::postgres` (server: pooled
//!   transactions, the lock protocol, LISTEN/NOTIFY, the optional AGE
//!   projection).
//! - [`graph`]: graph parameter rules and shortest paths over
//!   `Store::expand`.
//! - [`search`]: query terms and searchable text, shared by both engines.
//! - [`crdt`]: Yjs documents: the bounded check of untrusted bytes
//!   (`check`), all yrs work (`fold`), state rebuild and quarantine,
//!   compaction into snapshots (`compact`), y-websocket sync (`sync`),
//!   the Hocuspocus protocol's frames (`hocuspocus`).
//! - [`embed`]: the `Embedder` trait for semantic search: the local
//!   all-MiniLM-L6-v2 (candle) or Ollama, and installing the local model's
//!   pinned files.
//! - [`blob`]: the `BlobStore` trait (local directory, S3) for snapshots.
//! - [`feed`]: the change feed's consumers (derived indexes): one leader
//!   per consumer, durable cursors, retries, outbox pruning, lag.
//! - [`jobs`]: scheduled upkeep (compaction, checkpoints, optimisation)
//!   with each job's last run.
//! - [`api`]: the axum HTTP layer, one module per resource, auth
//!   extractors, the error table and the OpenAPI document; knows no SQL.
//! - [`lifecycle`]: the cancellation token and task tracker that stop
//!   background work.
//! - [`digest`]: SHA-256 as lowercase hex.
//! - [`logging`]: the process's log, text or JSON lines.
//! - [`server`]: wiring: open the store, resolve the admin key, build the
//!   router, serve (HTTPS when `STRATA_TLS_*` are set), shut down in order.
//! - [`tls`]: rustls for the HTTP listener and `strata health` (PostgreSQL's
//!   TLS is `store::postgres::tls`).
//! - [`cli`]: the one-shot commands `migrate`, `init`, `doctor`, `age sync`,
//!   `model fetch` (the binary, `main.rs`, parses arguments and calls
//!   `server` or `cli`).

pub mod api;
pub mod backup;
pub mod blob;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crdt;
pub mod digest;
pub mod domain;
pub mod embed;
pub mod export;
pub mod feed;
pub mod graph;
pub mod import;
pub mod jobs;
pub mod lifecycle;
pub mod logging;
pub mod migrate_store;
pub mod search;
pub mod server;
pub mod store;
pub mod tls;
