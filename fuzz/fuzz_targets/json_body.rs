//! Fuzzes the strict JSON body parser (`strata::domain::json::parse`):
//! serde_json plus a duplicate-key visitor and a number scan over the bytes.
//! Run: `cargo +nightly fuzz run json_body fuzz/corpus/json_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::domain::json::fuzz_properties(data);
});
