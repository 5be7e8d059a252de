//! Fuzzes the decoding of page cursors (`src/store/cursor.rs`): clients
//! pass them back, so any text decodes to a key or is refused, without a
//! panic; a decoded key encodes to a cursor that decodes to the same key.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/domain"]
mod domain {
    mod error;
    mod model;
    pub use error::{DomainError, DomainResult};
    pub use model::*;
}

#[allow(dead_code)]
#[path = "../../src/store/cursor.rs"]
mod cursor;

#[allow(dead_code)]
#[path = "../../src/clock.rs"]
mod clock;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = cursor::decode::<cursor::IdCursor>(text) {
        let again: cursor::IdCursor = cursor::decode(&cursor::encode(&key)).unwrap();
        assert_eq!(again.id, key.id);
    }
    if let Ok(key) = cursor::decode::<cursor::VersionCursor>(text) {
        let again: cursor::VersionCursor = cursor::decode(&cursor::encode(&key)).unwrap();
        assert_eq!(again.v, key.v);
    }
    if let Ok(key) = cursor::decode::<cursor::AuditCursor>(text) {
        let again: cursor::AuditCursor = cursor::decode(&cursor::encode(&key)).unwrap();
        assert_eq!(again.before, key.before);
    }
    let page = domain::PageRequest {
        cursor: Some(text.to_owned()),
        limit: 10,
    };
    let _ = cursor::after_id(&page);
    let _ = cursor::before_version(&page);
    let _ = cursor::before_event(&page);
});
