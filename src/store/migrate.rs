//! The migration rules both backends apply: numbered SQL files compiled into
//! the binary, applied in order, each in its own transaction, recorded with
//! a checksum. An applied file that changed, or a database newer than this
//! binary, stops the start instead of guessing.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../sql/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

pub const SQLITE: &[Migration] = migrations!("sqlite": 1 => "0001_core", 2 => "0002_keys_audit", 3 => "0003_crdt", 4 => "0004_index_shapes", 5 => "0005_crdt_quarantine", 6 => "0006_change_feed", 7 => "0007_feed_consumers", 8 => "0008_entity_vectors", 9 => "0009_doc_changed_at", 10 => "0010_key_projects", 11 => "0011_job_runs", 12 => "0012_deferred_indexes", 13 => "0013_deleted_entities");
pub const POSTGRES: &[Migration] = migrations!("postgres": 1 => "0001_core", 2 => "0002_keys_audit", 3 => "0003_crdt", 4 => "0004_index_shapes", 5 => "0005_crdt_quarantine", 6 => "0006_change_feed", 7 => "0007_feed_consumers", 8 => "0008_entity_vectors", 9 => "0009_doc_changed_at", 10 => "0010_key_projects", 11 => "0011_job_runs", 12 => "0012_deferred_indexes", 13 => "0013_deleted_entities");

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {0} was changed after it was applied (checksum differs)")]
    Changed(String),
    #[error("the database has migration {0}, newer than this binary knows; upgrade strata")]
    TooNew(i64),
    #[error("migration failed: {0}")]
    Database(String),
}

pub fn checksum(sql: &str) -> String {
    crate::digest::sha256_hex(sql.as_bytes())
}

/// Checks what is applied (version, name, checksum) against what this binary
/// knows and returns the migrations still to apply, in order.
pub fn pending<'a>(
    known: &'a [Migration],
    applied: &[(i64, String, String)],
) -> Result<Vec<&'a Migration>, MigrateError> {
    for (version, name, sum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => return Err(MigrateError::TooNew(*version)),
            Some(m) if checksum(m.sql) != *sum => return Err(MigrateError::Changed(name.clone())),
            Some(_) => {}
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|a| a.0 == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_number_their_migrations_alike() {
        let names = |ms: &[Migration]| ms.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES));
    }

    #[test]
    fn changed_and_unknown_migrations_are_refused() {
        let ok = vec![(1, "0001_core".to_string(), checksum(SQLITE[0].sql))];
        assert_eq!(pending(SQLITE, &ok).unwrap().len(), SQLITE.len() - 1);
        let changed = vec![(1, "0001_core".to_string(), "x".to_string())];
        assert!(matches!(
            pending(SQLITE, &changed),
            Err(MigrateError::Changed(_))
        ));
        let newer = vec![(999, "future".to_string(), "x".to_string())];
        assert!(matches!(
            pending(SQLITE, &newer),
            Err(MigrateError::TooNew(999))
        ));
    }
}
