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
    fn depth() {
        let mut v = serde_json::json!(1);
        for _ in 0..40 {
            v = serde_json::json!([v]);
        }
        assert!(json_depth(&v, 1).is_err());
    }
}
