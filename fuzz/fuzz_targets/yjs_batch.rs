//! Fuzzes the gateway batch decoder (`POST P/doc-updates`, `crdt::batch`):
//! any body decodes to documents or is refused, without a panic or an
//! allocation it did not read; what decodes encodes back to a body that
//! decodes alike, and no update is over the limit.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/crdt/batch.rs"]
mod batch;

use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(docs) = batch::decode(data, LIMIT) else {
        return;
    };
    assert!(docs.iter().all(|d| d.updates.iter().all(|u| u.len() <= LIMIT)));
    let frames: Vec<(&str, &[u8])> = docs
        .iter()
        .flat_map(|d| d.updates.iter().map(|u| (d.doc.as_str(), u.as_slice())))
        .collect();
    let again = batch::decode(&batch::encode(frames), LIMIT).unwrap();
    assert_eq!(again, docs);
});
