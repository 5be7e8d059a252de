//! Strict JSON for what clients send (request bodies, `where=`): serde_json
//! parses, and this refuses what it would let through silently:
//!
//! - a key given twice in one object, at any depth (serde_json keeps the
//!   last one, so `{"op": "create_entity", "op": "delete_entity"}` would run
//!   the delete);
//! - a key serde_json reserves (`$serde_json::private::...`: its `Value`
//!   would parse the string under it again, past these checks);
//! - a number that would not read back as sent: an integer literal outside
//!   the signed 64-bit range (serde_json turns it into a float), or a
//!   decimal whose nearest 64-bit float does not print back as the same
//!   decimal value (`0.1` passes: it reads back as `0.1`; `0.1000000000000000000001`
//!   does not). Every accepted number is an i64 or an f64 that round-trips,
//!   which SQLite's JSON text, PostgreSQL's jsonb and AGE's agtype all hold
//!   alike.
//!
//! serde_json does the parsing; duplicate keys are caught by the visitor
//! that builds the value. The number check is a scan over bytes serde_json
//! has already accepted as JSON (fuzzed: `fuzz/fuzz_targets/json_body.rs`).

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `bytes` as one JSON value under the rules above; the error says
/// what was refused (and where, for syntax errors and duplicate keys).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let value = serde_json::from_slice::<Strict>(bytes)
        .map_err(|e| e.to_string())?
        .0;
    check_numbers(bytes)?;
    Ok(value)
}

/// A `Value` built by a visitor that refuses duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // serde_json's Value treats a first key with this prefix as an
            // instruction (`RawValue`: the string value is parsed again,
            // by plain serde_json, when a body is turned into its type),
            // which would let JSON text past these rules.
            if key.starts_with("$serde_json::private::") {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} is reserved"
                )));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value_seed(StrictSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Strict;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Strict, D::Error> {
        Strict::deserialize(d)
    }
}

/// Checks every number literal of `bytes`, which serde_json has accepted as
/// JSON: outside strings, a number is the only token with a digit or `-`.
/// Written not to panic or loop on any input.
fn check_numbers(bytes: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                // ASCII by construction.
                let literal = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                check_number(literal)?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether one number literal is kept exactly (see the module comment).
pub fn check_number(literal: &str) -> Result<(), String> {
    if !literal.contains(['.', 'e', 'E']) {
        return match literal.parse::<i64>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "the integer {} does not fit in 64 bits and would not be kept exactly; send it as a string",
                shorten(literal)
            )),
        };
    }
    // Compared with the text serde_json writes for the float (what is
    // stored and served): at a tie between two shortest forms, std's
    // formatting and serde_json's may pick different digits, and a rule
    // judged by one would refuse what the other writes back.
    let stored = literal
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(|n| n.to_string());
    match stored {
        Some(text) if same_decimal(literal, &text) => Ok(()),
        Some(text) => Err(format!(
            "the number {} would not be kept exactly (as a 64-bit float it reads back as {text}); send it as a string",
            shorten(literal)
        )),
        None => Err(format!(
            "the number {} is out of range",
            shorten(literal)
        )),
    }
}

fn shorten(literal: &str) -> String {
    if literal.len() <= 40 {
        literal.to_owned()
    } else {
        format!("{}...", literal.get(..40).unwrap_or(literal))
    }
}

/// Whether two number literals denote the same decimal value.
fn same_decimal(a: &str, b: &str) -> bool {
    match (digits_of(a), digits_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Sign, significant digits (no leading or trailing zeros) and the power
/// of ten of the last digit; zero has no digits. None for an exponent
/// beyond i64 with a nonzero significand (no f64 holds that exactly).
fn digits_of(literal: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, literal),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed_start = all.trim_start_matches('0');
    if trimmed_start.is_empty() {
        return Some((negative, String::new(), 0));
    }
    let trimmed = trimmed_start.trim_end_matches('0');
    let trailing = (trimmed_start.len() - trimmed.len()) as i64;
    let exponent: i64 = exponent.trim_start_matches('+').parse().ok()?;
    let power = exponent
        .checked_sub(frac.len() as i64)?
        .checked_add(trailing)?;
    Some((negative, trimmed.to_owned(), power))
}

/// The properties the fuzz target (`fuzz/fuzz_targets/json_body.rs`) checks
/// on any input: `parse` never panics; what it accepts is exactly what
/// serde_json reads, and serialising that value gives a body `parse`
/// accepts again, equal to it (nothing accepted changes on a round trip).
#[doc(hidden)]
pub fn fuzz_properties(data: &[u8]) {
    let Ok(value) = parse(data) else { return };
    let plain: Value = serde_json::from_slice(data).expect("parse accepts only JSON");
    assert_eq!(value, plain, "parse reads what serde_json reads");
    let text = serde_json::to_vec(&value).expect("a Value serialises");
    let again = parse(&text).unwrap_or_else(|e| {
        panic!(
            "{} was accepted but its serialisation {} is refused: {e}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(again, value, "a round trip changes nothing");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_json_parses_as_serde_json_does() {
        let text = r#"{"a": [1, -2, 1.5, "x\"y", true, null, {"b": {}}], "c": 0.1, "d": 1e300}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"op": "create_entity", "op": "delete_entity"}"#,
            r#"{"a": {"b": 1, "b": 2}}"#,
            r#"[{"x": 1}, {"y": [{"k": 1, "k": 1}]}]"#,
            r#"{"a": 1, "\u0061": 2}"#,
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.starts_with("duplicate key"), "{text}: {e}");
        }
        assert!(parse(br#"{"op": 1, "op": 2}"#)
            .unwrap_err()
            .contains("\"op\""));
    }

    /// Found by the fuzz target: with serde_json's `raw_value` feature (axum
    /// enables it), `{"$serde_json::private::RawValue": "<text>"}` read as a
    /// `Value` becomes `<text>` parsed by plain serde_json: duplicate keys
    /// and inexact numbers would get through inside the string.
    #[test]
    fn serde_json_reserved_keys_are_refused() {
        for text in [
            r#"{"$serde_json::private::RawValue": "{\"a\": 1, \"a\": 2}"}"#,
            r#"{"p": {"x": {"$serde_json::private::RawValue": "1180591620717411303424"}}}"#,
            r#"{"a": 1, "$serde_json::private::Number": "1"}"#,
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.contains("is reserved"), "{text}: {e}");
        }
    }

    #[test]
    fn numbers_are_kept_exactly_or_refused() {
        for ok in [
            "0",
            "-0",
            "9223372036854775807",
            "-9223372036854775808",
            "0.1",
            "-0.0",
            "1.5e3",
            "1E2",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
            "100.000",
            "1e21",
            "0e999999999999999999999",
        ] {
            assert!(check_number(ok).is_ok(), "{ok}: {:?}", check_number(ok));
        }
        for bad in [
            "9223372036854775808",
            "18446744073709551615",
            "1180591620717411303424",
            // 2^70 is an f64, but it reads back as 1.1805916207174113e21.
            "1180591620717411303424.0",
            "-9223372036854775809",
            "0.1000000000000000000001",
            "3.141592653589793238462643383279",
            "9007199254740993.0",
            "1e-400",
            "1e99999999999999999999",
        ] {
            assert!(check_number(bad).is_err(), "{bad} was accepted");
        }
        let e = parse(br#"{"n": 1180591620717411303424}"#).unwrap_err();
        assert!(e.contains("1180591620717411303424"), "{e}");
        // Digits inside strings are not numbers.
        assert_eq!(
            parse(br#"{"s": "1180591620717411303424 \" 0.1000000000000000000001"}"#).unwrap(),
            json!({"s": "1180591620717411303424 \" 0.1000000000000000000001"})
        );
    }

    /// The fuzz target's properties over its seed corpus, so they run in
    /// every `cargo test` (fuzzing itself needs cargo-fuzz and nightly).
    #[test]
    fn fuzz_corpus_holds_the_properties() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/json_body");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            fuzz_properties(&bytes);
            // Every prefix too: truncated bodies must not panic either.
            for cut in 0..bytes.len().min(256) {
                fuzz_properties(&bytes[..cut]);
            }
            seen += 1;
        }
        assert!(seen >= 10, "the seed corpus is missing");
    }

    #[test]
    fn syntax_errors_stay_errors() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "nul", "\"\\ud800\""] {
            assert!(parse(text.as_bytes()).is_err(), "{text}");
        }
    }
}
