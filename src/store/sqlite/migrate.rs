//! A strict migration runner: numbered SQL files compiled into the binary,
//! applied in order, each in its own transaction, recorded with a checksum.
//! An applied file that changed, or a database newer than this binary,
//! stops the start instead of guessing.

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_core",
        sql: include_str!("../../../sql/sqlite/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "0002_keys_audit",
        sql: include_str!("../../../sql/sqlite/0002_keys_audit.sql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {0} was changed after it was applied (checksum differs)")]
    Changed(String),
    #[error("the database has migration {0}, newer than this binary knows; upgrade strata")]
    TooNew(i64),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies pending migrations; returns how many were applied.
pub fn run(conn: &mut Connection) -> Result<usize, MigrateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    let applied: Vec<(i64, String, String)> = conn
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (version, name, sum) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => return Err(MigrateError::TooNew(*version)),
            Some(m) if checksum(m.sql) != *sum => return Err(MigrateError::Changed(name.clone())),
            Some(_) => {}
        }
    }
    let mut count = 0;
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|a| a.0 == m.version))
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, checksum(m.sql), crate::clock::now()],
        )?;
        tx.commit()?;
        tracing::info!(migration = m.name, "applied migration");
        count += 1;
    }
    Ok(count)
}
