//! Search rules shared by the backends: how a query becomes terms, which
//! text of an entity is searchable, and which snippets are shown.

pub mod fusion;
pub mod meili;
pub mod vectors;

use crate::domain::Properties;
use serde_json::Value;

/// Words of the query, lower-cased. Only letters and digits survive, so no
/// query syntax (FTS5 or tsquery) in user text is ever parsed.
pub fn query_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(32)
        .map(str::to_lowercase)
        .collect()
}

/// Every string value of the properties, one per line.
pub fn text_of(props: &Properties) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(m) => m.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    props.values().for_each(|v| walk(v, &mut out));
    out
}

/// Up to three string values that contain a query term.
pub fn highlights(props: &Properties, terms: &[String]) -> Vec<String> {
    text_of(props)
        .lines()
        .filter(|line| {
            let lower = line.to_lowercase();
            terms.iter().any(|t| lower.contains(t.as_str()))
        })
        .take(3)
        .map(|line| line.chars().take(200).collect())
        .collect()
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
    }
}
