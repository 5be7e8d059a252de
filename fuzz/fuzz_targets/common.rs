//! What every Yjs target shares: the daemon's own check and fold modules,
//! and the production panic policy (yrs panics are caught, not fatal).

#[path = "../../src/crdt/check.rs"]
#[allow(dead_code)]
pub mod check;
#[path = "../../src/crdt/fold.rs"]
#[allow(dead_code)]
pub mod fold;

/// The daemon catches yrs panics (`fold::guarded`); libFuzzer's hook would
/// abort on them first. What still fails a run is what the daemon could not
/// survive: a crash, a stack overflow, a timeout or running out of memory.
pub fn catch_panics_as_the_daemon_does() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
