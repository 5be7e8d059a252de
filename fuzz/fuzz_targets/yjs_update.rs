//! One untrusted update: the check must never crash, and bytes it passes
//! must decode in yrs without crashing (refusing is fine).
#![no_main]
mod common;

use common::{check, fold};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    if check::update(data).is_ok() {
        if fold::decodes(data) {
            // What the daemon stores is merged and rebuilt later.
            let _ = fold::gc_state(vec![data.to_vec()]);
        }
    }
});
