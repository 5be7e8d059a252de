//! Applies `store::migrate::POSTGRES`, holding an advisory lock so that
//! daemons starting together migrate one at a time.

use crate::store::migrate::{self, MigrateError};

/// Any constant works; it only has to be the same for every daemon.
const MIGRATION_LOCK: i64 = 0x5354_5241_5441;

fn db(e: tokio_postgres::Error) -> MigrateError {
    // "db error" alone says nothing: name the server's code and message.
    MigrateError::Database(match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    })
}

pub async fn run(client: &mut tokio_postgres::Client) -> Result<usize, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    let result = apply_pending(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlock.map_err(db)?;
    Ok(applied)
}

async fn apply_pending(client: &mut tokio_postgres::Client) -> Result<usize, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version bigint PRIMARY KEY, name text NOT NULL,
                 checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
    let applied: Vec<(i64, String, String)> = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let todo = migrate::pending(migrate::POSTGRES, &applied)?;
    for m in &todo {
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(m.sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &migrate::checksum(m.sql)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(migration = m.name, "applied migration");
    }
    Ok(todo.len())
}
