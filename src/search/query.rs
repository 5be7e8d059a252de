//! Query text as each full-text engine receives it. Only letters and digits
//! of the user's text survive into a query, so no syntax of FTS5, tsquery
//! or Meilisearch in user text is ever parsed (`fuzz/fuzz_targets/
//! search_query.rs` holds it to that, with SQLite's own FTS5 parser). Std
//! only, so the fuzz target builds this file by path.

/// Most terms a query keeps.
pub const MAX_TERMS: usize = 32;

/// Words of the query, lower-cased: runs of letters and digits. Lower
/// casing can add marks (`İ` becomes `i` and U+0307), which are dropped.
pub fn query_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .map(|t| {
            t.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .take(MAX_TERMS)
        .collect()
}

/// An FTS5 MATCH expression: every term as a quoted prefix, all required,
/// in the `body` column.
pub fn fts5_match(terms: &[String]) -> String {
    let body = terms
        .iter()
        .map(|t| format!("\"{}\"*", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("body : ({body})")
}

/// A tsquery text: every term as a prefix, all required.
pub fn tsquery_prefix(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("{t}:*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// What the fuzz target checks of any input: terms are non-empty runs of
/// letters and digits, lower-cased, at most `MAX_TERMS` of them.
pub fn check_terms(q: &str) -> Vec<String> {
    let terms = query_terms(q);
    assert!(terms.len() <= MAX_TERMS);
    for t in &terms {
        assert!(!t.is_empty());
        assert!(t.chars().all(char::is_alphanumeric), "{t:?}");
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_syntax_is_reduced_to_words() {
        assert_eq!(
            query_terms("\"a\" OR b* NEAR(c:d) & !e"),
            ["a", "or", "b", "near", "c", "d", "e"]
        );
        assert!(query_terms("*** ::: ()").is_empty());
        // Found by fuzzing: lower-casing İ adds a combining mark.
        assert_eq!(query_terms("İstanbul"), ["istanbul"]);
        assert_eq!(
            fts5_match(&query_terms("a b")),
            "body : (\"a\"* AND \"b\"*)"
        );
        assert_eq!(tsquery_prefix(&query_terms("a b")), "a:* & b:*");
    }
}
