//! A stored log (several updates) on its way to a merged state: each update
//! is checked as the daemon checks stored bytes, the ones that pass are
//! folded into a snapshot and merged with the rest by yrs, and whatever
//! yrs hands back must pass the check itself, or the document could not be
//! loaded again.
#![no_main]
mod common;

use common::{check, fold};
use libfuzzer_sys::fuzz_target;

/// Splits the input into updates at each 0xff 0x00 0xff marker.
fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(3).position(|w| w == [0xff, 0x00, 0xff]) {
        parts.push(rest[..at].to_vec());
        rest = &rest[at + 3..];
    }
    parts.push(rest.to_vec());
    parts
}

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    let parts: Vec<Vec<u8>> = split(data)
        .into_iter()
        .filter(|u| check::update(u).is_ok() && fold::decodes(u))
        .collect();
    if parts.is_empty() {
        return;
    }
    // A snapshot of a prefix, then the log as loaded: snapshot + tail.
    let cut = parts.len() / 2;
    let Ok(snapshot) = fold::snapshot(parts[..cut].to_vec()) else {
        return;
    };
    assert!(
        check::update(&snapshot).is_ok(),
        "a snapshot fails the check"
    );
    let mut loaded = vec![snapshot];
    loaded.extend_from_slice(&parts[cut..]);
    if let Ok(state) = fold::merge(loaded) {
        assert!(check::update(&state).is_ok(), "a state fails the check");
    }
});
