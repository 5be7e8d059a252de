//! One untrusted Hocuspocus frame: decoded and checked down to its Yjs
//! payload, which then goes where the daemon sends it. A frame that
//! decodes to a Yjs body reads back the same once re-addressed.
#![no_main]
mod common;

// `hocuspocus.rs` names its sibling as `super::check`.
use common::check;
use common::check::SyncMessage;
use common::fold;
use libfuzzer_sys::fuzz_target;

#[path = "../../src/crdt/hocuspocus.rs"]
#[allow(dead_code)]
mod hocuspocus;

use hocuspocus::{Body, Frame};

fuzz_target!(|data: &[u8]| {
    common::catch_panics_as_the_daemon_does();
    let Ok(Frame::Doc { name, body }) = hocuspocus::decode(data) else {
        return;
    };
    assert!(name.len() <= hocuspocus::MAX_NAME_BYTES);
    assert!(hocuspocus::document_id(name).len() <= name.len());
    if let Body::Yjs { yjs, message } = body {
        // Re-addressed as the daemon sends it (lengths re-encoded in their
        // shortest form), it reads back the same.
        let sent = hocuspocus::wrap(name, yjs);
        assert!(matches!(
            hocuspocus::decode(&sent),
            Ok(Frame::Doc { name: n, body: Body::Yjs { yjs: y, .. } }) if n == name && y == yjs
        ));
        let again = check::sync_message(yjs);
        assert_eq!(again.as_ref(), Ok(&message));
        match message {
            SyncMessage::Step1(sv) => {
                if fold::decodes_state_vector(sv) {
                    let _ = fold::diff(&[0, 0], sv);
                }
            }
            SyncMessage::Step2(u) | SyncMessage::Update(u) => {
                if fold::decodes(u) {
                    let _ = fold::adds_nothing(&[0, 0], u);
                    let _ = fold::adds_nothing(u, u);
                }
            }
            _ => {}
        }
    }
});
