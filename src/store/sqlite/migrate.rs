//! Applies `store::migrate::SQLITE` to a SQLite file.

use crate::store::migrate::{self, MigrateError};
use rusqlite::{params, Connection};

fn db(e: rusqlite::Error) -> MigrateError {
    MigrateError::Database(e.to_string())
}

/// Applies pending migrations; returns how many were applied.
pub fn run(conn: &mut Connection) -> Result<usize, MigrateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .map_err(db)?;
    let applied: Vec<(i64, String, String)> = conn
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(db)?;
    let todo = migrate::pending(migrate::SQLITE, &applied)?;
    for m in &todo {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        tx.execute_batch(m.sql).map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, migrate::checksum(m.sql), crate::clock::now()],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(migration = m.name, "applied migration");
    }
    Ok(todo.len())
}
