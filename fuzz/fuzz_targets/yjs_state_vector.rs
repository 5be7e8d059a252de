//! An untrusted state vector (`GET docs/{doc}?state_vector=`, sync step 1):
//! checked, then decoded and used for a diff as the daemon does.
#![no_main]
mod common;

use common::{check, fold};
use libfuzzer_sys::fuzz_target;

/// A small state with two clients and a deletion, to diff against.
fn state() -> &'static [u8] {
    use yrs::{ReadTxn, Text, Transact};
    static STATE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        let doc = yrs::Doc::with_client_id(1);
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "hello");
        text.remove_range(&mut doc.transact_mut(), 1, 2);
        let other = yrs::Doc::with_client_id(2);
        other.get_or_insert_map("m");
        let state = doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        state
    })
}

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    if check::state_vector(data).is_ok() && fold::decodes_state_vector(data) {
        let _ = fold::diff(state(), data);
    }
});
