//! Search rules shared by the backends: how a query becomes terms, which
//! text of an entity is searchable, and which snippets are shown.

pub mod fusion;
pub mod hits;
pub mod meili;
pub mod query;
pub mod semantic;
pub mod text_index;
pub mod vector_memory;
pub mod vectors;

pub use query::query_terms;

use crate::domain::Properties;
use serde_json::Value;

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
