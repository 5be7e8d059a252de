//! One untrusted y-websocket frame: decoded and checked down to its
//! payload, which then goes where the daemon sends it.
#![no_main]
mod common;

use common::check::{self, SyncMessage};
use common::fold;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    match check::sync_message(data) {
        Ok(SyncMessage::Step1(sv)) => {
            if fold::decodes_state_vector(sv) {
                let _ = fold::diff(&[0, 0], sv);
            }
        }
        Ok(SyncMessage::Step2(u)) | Ok(SyncMessage::Update(u)) => {
            let _ = fold::decodes(u);
        }
        _ => {}
    }
});
