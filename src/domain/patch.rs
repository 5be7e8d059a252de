//! JSON merge patch (RFC 7396): apply, diff, and containment.

use serde_json::{Map, Value};

/// Applies `patch` to `target` as RFC 7396 describes.
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            apply_merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge patch that turns `from` into `to`, or `None` when RFC 7396 cannot
/// express it (a null value inside `to` would read back as a deletion).
pub fn diff(from: &Map<String, Value>, to: &Map<String, Value>) -> Option<Value> {
    let mut patch = Map::new();
    for key in from.keys() {
        if !to.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, new) in to {
        match from.get(key) {
            Some(old) if old == new => {}
            Some(Value::Object(old)) if new.is_object() => {
                patch.insert(key.clone(), diff(old, new.as_object()?)?);
            }
            _ => {
                if contains_null(new) {
                    return None;
                }
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    Some(Value::Object(patch))
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(contains_null),
        _ => false,
    }
}

/// PostgreSQL `@>` semantics: objects contain sub-objects, arrays contain
/// every element of the needle, scalars must be equal.
pub fn json_contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Object(h), Value::Object(n)) => n
            .iter()
            .all(|(k, nv)| h.get(k).is_some_and(|hv| json_contains(hv, nv))),
        (Value::Array(h), Value::Array(n)) => {
            n.iter().all(|nv| h.iter().any(|hv| json_contains(hv, nv)))
        }
        (Value::Number(a), Value::Number(b)) => same_number(a, b),
        _ => haystack == needle,
    }
}

/// Numeric equality as PostgreSQL's `numeric` has it (`1 = 1.0`), exact:
/// integers beyond 2^53 are not compared through f64.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(x), None) => b.as_f64().is_some_and(|f| float_is_int(f, x)),
        (None, Some(y)) => a.as_f64().is_some_and(|f| float_is_int(f, y)),
        (None, None) => a.as_f64() == b.as_f64(),
    }
}

/// Whether the float `f` is exactly the integer `x`.
fn float_is_int(f: f64, x: i128) -> bool {
    // Every f64 with |f| < 2^64 and no fraction converts to i128 exactly.
    f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 && f as i128 == x
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_examples() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        apply_merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn diff_round_trips() {
        let a = json!({"x": 1, "y": {"z": [1, 2]}, "gone": true});
        let b = json!({"x": 2, "y": {"z": [1, 2], "w": "new"}});
        let p = diff(a.as_object().unwrap(), b.as_object().unwrap()).unwrap();
        let mut rebuilt = a.clone();
        apply_merge_patch(&mut rebuilt, &p);
        assert_eq!(rebuilt, b);
    }

    #[test]
    fn diff_refuses_nulls_it_cannot_express() {
        let a = json!({});
        let b = json!({"x": null});
        assert!(diff(a.as_object().unwrap(), b.as_object().unwrap()).is_none());
    }

    #[test]
    fn containment() {
        let doc = json!({"a": 1, "tags": ["x", "y"], "o": {"p": true, "q": 2}});
        assert!(json_contains(&doc, &json!({"a": 1.0})));
        assert!(json_contains(
            &doc,
            &json!({"tags": ["y"], "o": {"p": true}})
        ));
        assert!(!json_contains(&doc, &json!({"tags": ["z"]})));
        assert!(!json_contains(&doc, &json!({"missing": null})));
        // Exact, as jsonb's numeric: no rounding through f64.
        let big = json!({"n": 9007199254740993_i64});
        assert!(json_contains(&big, &json!({"n": 9007199254740993_i64})));
        assert!(!json_contains(&big, &json!({"n": 9007199254740992_i64})));
        assert!(!json_contains(&big, &json!({"n": 9007199254740992.0})));
        assert!(json_contains(&json!({"n": 4.0}), &json!({"n": 4})));
        assert!(!json_contains(&json!({"n": 4.5}), &json!({"n": 4})));
        assert!(json_contains(
            &json!({"n": u64::MAX}),
            &json!({"n": u64::MAX})
        ));
    }
}
