//! Every integration test, in one test binary: each file below was a test
//! binary of its own, and each of those linked the whole daemon (minutes on
//! two cores). `cargo test --test it MODULE::` runs one of them, e.g.
//! `cargo test --test it concurrency:: -- --nocapture`.
//!
//! One process now holds them all, and the harness runs its tests in
//! parallel. What is process-wide and must stay safe that way:
//! - no test changes the environment (`std::env::set_var`, `remove_var`):
//!   configuration is passed to `strata::server::build` and
//!   `strata::store::open` explicitly (`support::pg_config`, ...);
//! - the PGlite server serves one session with prepared statement names
//!   that outlive connections: only `age` uses it, and its cases take turns
//!   on one lock (`age::PGLITE`), so a new PGlite case belongs there.
//!   tokio-postgres names statements from a process-wide counter, so within
//!   one process names never repeat; a second test process on the same
//!   PGlite server starts again at `s0` and collides (as before the merge):
//!   one test run per PGlite start, as ops/test.sh does;
//! - the counters in `strata::store` and `strata::crdt` are process-wide:
//!   tests compare them only as "went up", never as exact values;
//! - `concurrency` installs the process's tracing subscriber (warnings and
//!   errors into its in-memory log, printed in its summary); lines of tests
//!   that run beside it may appear there, and nothing asserts on it.

#[macro_use]
mod support;

mod age;
mod api;
mod backup;
mod blob;
mod compose;
mod concurrency;
mod config_inputs;
mod conformance;
mod cors;
mod crdt;
mod disk_full;
mod doc_batch;
mod embed;
mod export;
mod faults;
mod feed;
mod hocuspocus;
mod https;
mod init;
mod interop;
mod jobs;
mod meili;
mod observability;
mod oidc;
mod openapi;
mod pg_tls;
mod pgbackrest;
mod postgres;
mod readiness;
mod security;
mod semantic;
mod shutdown;
mod storage;
mod text_index;
mod vectors;
