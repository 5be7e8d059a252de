//! Fuzzes the text index's analysis (`src/search/text_index/analysis.rs`):
//! any entity text and any query word (both client bytes) is split, folded
//! and stemmed without panicking, within its bounds (prefixes of at most
//! `MAX_PREFIX` characters, at most `MAX_WORDS` words), and a word's own
//! query term is always among its index tokens, so an entity is found by
//! any word it contains.
#![no_main]

#[path = "../../src/search/text_index/analysis.rs"]
mod analysis;

use analysis::{Analyzer, MAX_PREFIX, MAX_WORDS};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static ANALYZER: RefCell<Analyzer> = RefCell::new(Analyzer::default());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    ANALYZER.with(|a| {
        let mut a = a.borrow_mut();
        let tokens = a.index_tokens(text);
        for t in &tokens {
            assert!(!t.text.is_empty(), "empty token from {text:?}");
            assert!(
                t.text.chars().count() <= MAX_PREFIX,
                "{:?} too long",
                t.text
            );
            assert!(t.position < MAX_WORDS);
        }
        assert!(tokens.len() <= 2 * MAX_PREFIX * MAX_WORDS);
        for word in text.split_whitespace().take(64) {
            let Some(term) = a.query_term(word) else {
                continue;
            };
            assert!(term.chars().count() <= MAX_PREFIX);
            let own = a.index_tokens(word);
            assert!(
                own.iter().any(|t| t.text == term),
                "query term {term:?} of {word:?} is not among its index tokens"
            );
        }
    });
});
