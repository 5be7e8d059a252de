//! Fuzzes search query text (`src/search/query.rs`): whatever a client
//! sends as `q`, the terms are plain words, and the FTS5 expression built
//! from them is accepted by SQLite's own FTS5 parser (a syntax error there
//! would be a 500). The tsquery text is built from the same words.
#![no_main]

#[path = "../../src/search/query.rs"]
mod query;

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static DB: RefCell<rusqlite::Connection> = RefCell::new({
        let db = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
        db.execute_batch("CREATE VIRTUAL TABLE t USING fts5 (scope, body); INSERT INTO t VALUES ('p1', 'hello world')")
            .expect("FTS5 table");
        db
    });
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let terms = query::check_terms(q);
    if terms.is_empty() {
        return;
    }
    let expression = query::fts5_match(&terms);
    DB.with(|db| {
        let db = db.borrow();
        let mut st = db
            .prepare_cached("SELECT rowid FROM t WHERE t MATCH ?1")
            .expect("prepare");
        let rows: Result<Vec<i64>, _> = st
            .query_map([&expression], |r| r.get(0))
            .and_then(|rows| rows.collect());
        if let Err(e) = rows {
            panic!("FTS5 refused {expression:?} built from {q:?}: {e}");
        }
    });
    let ts = query::tsquery_prefix(&terms);
    assert!(ts
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ':' | '*' | ' ' | '&')));
});
