//! Input rules shared by every entry point (HTTP, CLI, batch).

use super::{DomainError, DomainResult, Properties};
use serde_json::Value;

pub const MAX_ID_LEN: usize = 256;
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_PROPERTY_DEPTH: usize = 32;

/// Ids are 1..=256 characters with no control characters and no `/`
/// (they appear as path segments).
pub fn id(what: &str, value: &str) -> DomainResult<()> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(DomainError::BadRequest(format!(
            "{what} must be 1 to {MAX_ID_LEN} bytes long"
        )));
    }
    if value.chars().any(|c| c.is_control() || c == '/') {
        return Err(DomainError::BadRequest(format!(
            "{what} must not contain control characters or '/'"
        )));
    }
    Ok(())
}

/// Entity and relationship types become graph labels: `[A-Za-z_][A-Za-z0-9_]{0,62}`.
pub fn type_name(what: &str, value: &str) -> DomainResult<()> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || value.len() > 63 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DomainError::BadRequest(format!(
            "{what} must match [A-Za-z_][A-Za-z0-9_]{{0,62}}"
        )));
    }
    Ok(())
}

pub fn name(what: &str, value: &str) -> DomainResult<()> {
    if value.trim().is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control)
    {
        return Err(DomainError::BadRequest(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

pub fn properties(props: &Properties) -> DomainResult<()> {
    for v in props.values() {
        json_depth(v, 2)?;
    }
    Ok(())
}

/// Rejects values nested deeper than `MAX_PROPERTY_DEPTH`.
pub fn json_depth(value: &Value, depth: usize) -> DomainResult<()> {
    if depth > MAX_PROPERTY_DEPTH {
        return Err(DomainError::BadRequest(format!(
            "properties are nested deeper than {MAX_PROPERTY_DEPTH} levels"
        )));
    }
    match value {
        Value::Object(m) => m.values().try_for_each(|v| json_depth(v, depth + 1)),
        Value::Array(a) => a.iter().try_for_each(|v| json_depth(v, depth + 1)),
        _ => Ok(()),
    }
}

/// PostgreSQL cannot hold U+0000: not in `text`, not as `\u0000` in jsonb.
/// Both backends refuse it alike: `store::checked` applies these rules to
/// every text of every `Store` call.
pub fn no_nul(what: &str, value: &str) -> DomainResult<()> {
    if value.contains('\0') {
        return Err(nul_error(what));
    }
    Ok(())
}

/// `no_nul` over every key and string of a JSON value; the error names the
/// first offending place (`properties.a[2]`, `properties key "k\0ey"`).
pub fn json_no_nul(what: &str, value: &Value) -> DomainResult<()> {
    if !has_nul(value) {
        return Ok(());
    }
    Err(nul_error(
        &nul_place(what.to_owned(), value).unwrap_or_else(|| what.to_owned()),
    ))
}

/// `json_no_nul` for an object given as a map.
pub fn map_no_nul(what: &str, map: &serde_json::Map<String, Value>) -> DomainResult<()> {
    // The places are named only for a map that has a NUL: naming each key
    // on the way cost an allocation per key of every write.
    if !map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Ok(());
    }
    for (k, v) in map {
        if k.contains('\0') {
            return Err(nul_error(&format!("{what} key {k:?}")));
        }
        json_no_nul(&format!("{what}.{k}"), v)?;
    }
    Ok(())
}

fn nul_error(what: &str) -> DomainError {
    DomainError::BadRequest(format!("{what} must not contain a NUL character (U+0000)"))
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn nul_place(path: String, value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find(|(_, v)| has_nul(v))
            .and_then(|(i, v)| nul_place(format!("{path}[{i}]"), v)),
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!("{path} key {k:?}"))
            } else if has_nul(v) {
                nul_place(format!("{path}.{k}"), v)
            } else {
                None
            }
        }),
        _ => None,
    }
}

/// Parses an RFC 3339 time and normalises it to the stored UTC form.
pub fn time(what: &str, value: &str) -> DomainResult<String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| crate::clock::format(t.with_timezone(&chrono::Utc)))
        .map_err(|_| DomainError::BadRequest(format!("{what} must be an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert!(type_name("type", "Task_2").is_ok());
        assert!(type_name("type", "_x").is_ok());
        assert!(type_name("type", "2x").is_err());
        assert!(type_name("type", "a-b").is_err());
        assert!(type_name("type", "").is_err());
        assert!(type_name("type", &"a".repeat(64)).is_err());
        assert!(type_name("type", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn ids() {
        assert!(id("id", "abc-123").is_ok());
        assert!(id("id", "a\u{0}b").is_err());
        assert!(id("id", "a/b").is_err());
        assert!(id("id", &"x".repeat(257)).is_err());
    }

    #[test]
    fn nul_is_named_where_it_is() {
        assert!(no_nul("id", "ab").is_ok());
        let msg = |r: DomainResult<()>| r.unwrap_err().to_string();
        assert!(msg(no_nul("id", "a\0b")).starts_with("id must not contain a NUL"));
        let v = serde_json::json!({"a": [1, {"b": "x\u{0}"}], "k\u{0}ey": 1});
        let m = v.as_object().unwrap();
        let e = msg(map_no_nul("properties", m));
        assert!(
            e.starts_with("properties.a[1].b ") || e.starts_with("properties key \"k\\0ey\""),
            "{e}"
        );
        assert!(json_no_nul("where", &serde_json::json!({"ok": ["fine"]})).is_ok());
    }

    #[test]
    fn depth() {
        let mut v = serde_json::json!(1);
        for _ in 0..40 {
            v = serde_json::json!([v]);
        }
        assert!(json_depth(&v, 1).is_err());
    }
}
