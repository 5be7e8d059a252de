//! Fuzzes JSON Merge Patch and containment (`src/domain/patch.rs`), which
//! every PATCH, every stored version and every `where` filter go through.
//! The input is a JSON array; for each pair of its values: applying a patch
//! never panics and applying it twice changes nothing more (RFC 7396 is
//! idempotent); a diff between two objects, when RFC 7396 can express it,
//! turns the first into the second; every value contains itself.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/domain/patch.rs"]
mod patch;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(values)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for a in values.iter().take(4) {
        assert!(patch::json_contains(a, a), "{a} does not contain itself");
        for b in values.iter().take(4) {
            let mut once = a.clone();
            patch::apply_merge_patch(&mut once, b);
            let mut twice = once.clone();
            patch::apply_merge_patch(&mut twice, b);
            assert_eq!(once, twice, "applying {b} again changed {once}");
            if let (Value::Object(from), Value::Object(to)) = (a, b) {
                if let Some(p) = patch::diff(from, to) {
                    let mut rebuilt = a.clone();
                    patch::apply_merge_patch(&mut rebuilt, &p);
                    assert_eq!(&rebuilt, b, "the diff {p} of {a} does not give {b}");
                }
            }
        }
    }
});
