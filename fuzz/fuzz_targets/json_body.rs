//! Fuzzes the strict JSON body parser (`src/domain/json.rs`): serde_json
//! plus a duplicate-key visitor and a number scan over the bytes. The
//! parser's file is built here by path (it needs only serde and serde_json),
//! with the properties it promises checked by `fuzz_properties`.
#![no_main]

#[path = "../../src/domain/json.rs"]
#[allow(dead_code)]
mod json;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    json::fuzz_properties(data);
});
