//! Fuzzes the read-only check of user Cypher (`src/domain/cypher.rs`), the
//! gate before AGE: any text is accepted or refused without a panic, the
//! same way twice; an accepted query names at least one result column; and
//! an accepted query with a write clause in front of it is refused (a
//! string, comment or odd token in it cannot hide the clause).
#![no_main]

#[allow(dead_code)]
#[path = "../../src/domain"]
mod domain {
    pub mod cypher;
    mod error;
    pub use error::{DomainError, DomainResult};
}

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let first = domain::cypher::check_read_only(query);
    let again = domain::cypher::check_read_only(query);
    assert_eq!(first.is_ok(), again.is_ok());
    if let Ok(columns) = first {
        assert!(!columns.is_empty(), "{query:?} names no column");
        for clause in ["CREATE (x) ", "MATCH (x) DETACH DELETE x ", "CALL db.x() "] {
            let written = format!("{clause}{query}");
            assert!(
                domain::cypher::check_read_only(&written).is_err(),
                "{written:?} was accepted"
            );
        }
    }
});
