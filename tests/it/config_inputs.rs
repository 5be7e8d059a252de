//! The configuration loader under hostile input, fuzzed by mutation with a
//! fixed seed (so a failure repeats): every known `STRATA_*` variable set
//! to tricky or random text, and TOML files made by mutating a valid one.
//! Each load ends in a configuration or an error that says something; no
//! input panics. (A cargo-fuzz target would have to build the whole daemon
//! with instrumentation; the loader's inputs are small, so a seeded loop of
//! many thousands covers the same ground in a second.)

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const ROUNDS: usize = 20_000;
const FILE_ROUNDS: usize = 2_000;

/// Values that have broken parsers before: empty, huge, signs, units,
/// overflow, NUL, non-ASCII, TOML and URL syntax.
const TRICKY: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "18446744073709551616",
    "9223372036854775808",
    "1e309",
    "NaN",
    "true",
    "off",
    "on",
    "maybe",
    "\0",
    "é",
    "\u{202e}",
    "[",
    "]]",
    "{",
    "\"",
    "'''",
    "a = 1",
    "postgres://",
    "postgres://u:p@[::1:5432/db?sslmode=bogus",
    "sqlite://",
    "file://",
    "s3://",
    "* * * * *",
    "*/0 * * * * *",
    "60 60 25 32 13 8",
    "http://127.0.0.1:0",
    "127.0.0.1:99999",
    "0.0.0.0:7474",
];

fn random_text(rng: &mut StdRng) -> String {
    if rng.random_bool(0.6) {
        return TRICKY[rng.random_range(0..TRICKY.len())].to_owned();
    }
    let len = rng.random_range(0..64);
    (0..len)
        .map(|_| char::from_u32(rng.random_range(0..0x3000)).unwrap_or('?'))
        .collect()
}

/// Loads, turning a panic into a test failure that names the input.
fn load(vars: HashMap<String, String>, what: &str) {
    let shown = format!("{vars:?}");
    let loaded = std::panic::catch_unwind(|| strata::config::Config::from_vars(vars));
    match loaded {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(!format!("{e:#}").trim().is_empty(), "{what}: {shown}"),
        Err(_) => panic!("the loader panicked on {what}: {shown}"),
    }
}

#[test]
fn random_settings_never_panic_the_loader() {
    let mut rng = StdRng::seed_from_u64(0x5742_7a7a);
    let names: Vec<&str> = strata::config::known_variables()
        .filter(|n| *n != "STRATA_CONFIG")
        .collect();
    let data = tempfile::tempdir().unwrap();
    for _ in 0..ROUNDS {
        let mut vars = HashMap::new();
        vars.insert(
            "STRATA_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        );
        for _ in 0..rng.random_range(1..4) {
            let name = names[rng.random_range(0..names.len())];
            vars.insert(name.to_owned(), random_text(&mut rng));
        }
        if rng.random_bool(0.05) {
            vars.insert(format!("STRATA_{}", random_text(&mut rng)), "1".into());
        }
        load(vars, "these variables");
    }
}

/// A valid file with every table the loader knows, mutated below.
const SEED_FILE: &str = r#"listen = "127.0.0.1:7474"
rate_limit_per_sec = 100
compact_schedule = "0 30 * * * *"
[crdt]
max_update = 4096
inline_max = 8192
retention_secs = 60
snapshot_keep_secs = 120
"#;

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, rng.random()),
            2 => {
                let insert = random_text(rng);
                bytes.splice(at..at, insert.into_bytes());
            }
            _ => {
                let line = TRICKY[rng.random_range(0..TRICKY.len())];
                bytes.splice(at..at, format!("\n{line}\n").into_bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_files_never_panic_the_loader() {
    let mut rng = StdRng::seed_from_u64(0x746f_6d6c);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strata.toml");
    let mut vars = HashMap::new();
    vars.insert(
        "STRATA_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    );
    vars.insert("STRATA_CONFIG".to_owned(), file.display().to_string());
    std::fs::write(&file, SEED_FILE).unwrap();
    assert!(
        strata::config::Config::from_vars(vars.clone()).is_ok(),
        "the seed file loads"
    );
    for _ in 0..FILE_ROUNDS {
        std::fs::write(&file, mutate(&mut rng, SEED_FILE)).unwrap();
        load(vars.clone(), "a mutated file");
    }
}
