//! The rules of how stored state changes, as pure functions: given what a
//! backend loaded (and locked), they decide what it must store. No I/O: the
//! backends load, persist and answer queries, and nothing else.

pub mod docs;
pub mod history;
