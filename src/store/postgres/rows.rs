//! Row mapping and small SQL helpers shared by the PostgreSQL modules.

use crate::clock;
use crate::domain::*;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub const ENTITY_COLS: &str = "id, type, properties, version, created_at, updated_at, created_by, \
                               updated_by, deleted_at, seq";
pub const REL_COLS: &str =
    "id, type, from_id, to_id, properties, version, created_at, updated_at, \
                            created_by, updated_by";

pub fn pg_err(e: tokio_postgres::Error) -> DomainError {
    if is_contention(&e) {
        return DomainError::Contended(format!(
            "concurrent writes collided ({}); retry",
            e.as_db_error().map_or("", |d| d.message())
        ));
    }
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => {
            DomainError::Unavailable("the statement timed out".into())
        }
        Some(c) if *c == SqlState::DISK_FULL => DomainError::DiskFull,
        _ if is_unreachable(&e) => {
            DomainError::Unavailable(format!("the database cannot be reached: {e}"))
        }
        _ => DomainError::Storage(Box::new(e)),
    }
}

/// The server went away or is shutting down (a restart, a failover): the
/// request may succeed again once it is back, so it is a 503, not a fault.
/// Class 08 is a connection exception, 57P01-57P03 a shutdown or a server
/// not yet accepting connections.
fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || ["57P01", "57P02", "57P03"].contains(&code)
        })
        || (e.code().is_none() && e.as_db_error().is_none() && io_error(e))
}

/// Whether the error comes from the socket (the connection broke).
fn io_error(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// AGE's own messages when a statement meets a vertex or edge that another
/// transaction is changing. It raises them without a specific SQLSTATE.
const AGE_CONTENTION: [&str; 2] = [
    "could not be locked for updating",
    "Cannot delete a vertex that has edge(s)",
];

/// The server rolled the transaction back because of concurrent writers;
/// sending it again may succeed. Only database answers qualify: after a
/// broken connection the fate of a COMMIT is unknown, so it is no retry.
fn is_contention(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        return false;
    };
    let code = db.code();
    *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || AGE_CONTENTION.iter().any(|m| db.message().contains(m))
}

pub fn time(t: DateTime<Utc>) -> String {
    clock::format(t)
}

pub fn parse_time(s: &str) -> DomainResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| DomainError::BadRequest(format!("{s:?} is not an RFC 3339 time")))
}

fn object(v: serde_json::Value) -> Properties {
    match v {
        serde_json::Value::Object(m) => m,
        _ => Properties::new(),
    }
}

pub fn entity(row: &Row) -> Entity {
    Entity {
        id: row.get(0),
        entity_type: row.get(1),
        properties: object(row.get(2)),
        version: row.get(3),
        created_at: time(row.get(4)),
        updated_at: time(row.get(5)),
        created_by: row.get(6),
        updated_by: row.get(7),
        deleted_at: row.get::<_, Option<DateTime<Utc>>>(8).map(time),
        change_seq: row.get(9),
    }
}

pub fn relationship(row: &Row) -> Relationship {
    Relationship {
        id: row.get(0),
        rel_type: row.get(1),
        from: row.get(2),
        to: row.get(3),
        properties: object(row.get(4)),
        version: row.get(5),
        created_at: time(row.get(6)),
        updated_at: time(row.get(7)),
        created_by: row.get(8),
        updated_by: row.get(9),
    }
}

pub async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> DomainResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, args).await.map_err(pg_err)
}

pub async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> DomainResult<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query_opt(&st, args).await.map_err(pg_err)
}

pub async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> DomainResult<Row> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query_one(&st, args).await.map_err(pg_err)
}

pub async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> DomainResult<u64> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.execute(&st, args).await.map_err(pg_err)
}

pub async fn next_seq<C: GenericClient>(c: &C) -> DomainResult<i64> {
    let row = query_opt(c, "SELECT nextval('change_seq')", &[]).await?;
    Ok(row.map(|r| r.get(0)).unwrap_or_default())
}
