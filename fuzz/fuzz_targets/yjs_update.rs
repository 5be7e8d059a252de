//! One untrusted update: the check must never crash, and bytes it passes
//! must decode in yrs without crashing (refusing is fine).
#![no_main]
mod common;

use common::{check, fold};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    if check::update(data).is_ok() && fold::decodes(data) {
        // What the daemon stores is merged into snapshots later, and
        // diffed against client state vectors.
        if let Ok(state) = fold::snapshot(vec![vec![0, 0], data.to_vec()]) {
            let _ = fold::diff(&state, &[0]);
        }
    }
});
