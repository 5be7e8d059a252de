//! Applies `store::migrate::POSTGRES`, holding an advisory lock so that
//! daemons starting together migrate one at a time.
//!
//! Strata's objects live in the schema `strata`, whatever else the database
//! holds (Apache AGE's `ag_catalog`, other applications in `public`). Every
//! connection Strata opens puts `strata` first on its search_path (see
//! `postgres::pg_config` and the pool's hook), and the migrations set it
//! themselves, so they never depend on a connection's settings.
//!
//! Earlier versions created the tables wherever the search_path pointed:
//! `public`, or `ag_catalog` when AGE was on. Before migrating, `relocate`
//! moves such a layout into `strata` in one transaction.

use crate::store::migrate::{self, MigrateError};

/// Any constant works; it only has to be the same for every daemon.
const MIGRATION_LOCK: i64 = 0x5354_5241_5441;

/// The schema holding every object of `OBJECTS`.
pub const SCHEMA: &str = "strata";

/// Sets the search_path of a connection that does not use AGE (the pool's
/// hook runs it: PGlite ignores the startup options that set it on a real
/// server, and keeps session settings from one client to the next).
pub const SET_SEARCH_PATH: &str = "SET search_path = strata";

/// Where earlier versions put Strata's objects, in the order they are
/// considered: `ag_catalog` (AGE on) and `public` (AGE off).
const OLD_SCHEMAS: [&str; 2] = ["ag_catalog", "public"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    /// A sequence of its own; a serial column's sequence follows its table.
    Sequence,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Table => "TABLE",
            Kind::Sequence => "SEQUENCE",
        }
    }
}

/// Every object `sql/postgres/*.sql` (and the runner's `schema_migrations`)
/// creates directly in the schema. Indexes, constraints and the sequences
/// of serial columns belong to their table and move with it.
///
/// A new migration that creates a table or a sequence must add it here;
/// one that creates a function, a type or a view must add a `Kind` for it
/// as well. `tests/it/postgres.rs` (`the_object_list_names_everything_the_migrations_create`)
/// fails when something in `strata` is missing from this list: without it, a
/// relocation would leave that object behind.
pub const OBJECTS: &[(Kind, &str)] = &[
    (Kind::Table, "schema_migrations"),
    // 0001_core
    (Kind::Table, "orgs"),
    (Kind::Table, "projects"),
    (Kind::Sequence, "change_seq"),
    (Kind::Table, "entities"),
    (Kind::Table, "entity_versions"),
    (Kind::Table, "relationships"),
    (Kind::Table, "outbox"),
    // 0002_keys_audit
    (Kind::Table, "api_keys"),
    (Kind::Table, "audit_events"),
    // 0003_crdt
    (Kind::Table, "crdt_docs"),
    (Kind::Table, "crdt_updates"),
    (Kind::Table, "crdt_snapshots"),
    // 0005_crdt_quarantine
    (Kind::Table, "crdt_quarantine"),
    // 0006_change_feed
    (Kind::Sequence, "feed_position"),
    // 0007_feed_consumers
    (Kind::Table, "feed_cursors"),
    (Kind::Table, "feed_horizon"),
    // 0008_entity_vectors
    (Kind::Table, "entity_vectors"),
    // 0011_job_runs
    (Kind::Table, "job_runs"),
];

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
    let result = migrate_locked(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlock.map_err(db)?;
    Ok(applied)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<usize, MigrateError> {
    create_schema(client).await?;
    relocate(client).await?;
    apply_pending(client).await
}

/// Creates `strata` unless it exists (checked first, so that a role
/// without CREATE on the database can use a schema made for it).
async fn create_schema(client: &tokio_postgres::Client) -> Result<(), MigrateError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&SCHEMA])
        .await
        .map_err(db)?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// A schema holding what an earlier version of Strata created.
struct OldLayout {
    schema: &'static str,
    has_orgs: bool,
}

/// Moves Strata's objects into `strata` from where earlier versions created
/// them, when `strata` has no `schema_migrations` yet.
///
/// A layout is recognised by a `schema_migrations` with Strata's `checksum`
/// column next to an `orgs` table (another application's
/// `schema_migrations` is left alone). When both `ag_catalog` and `public`
/// hold one (AGE turned on and off over the same database), the one whose
/// `orgs` has rows is moved and the other is left untouched, with a warning;
/// when neither has rows, `ag_catalog`'s is moved; when both have rows the
/// start is refused: which data is current cannot be told, and merging
/// them is for a person to decide.
async fn relocate(client: &mut tokio_postgres::Client) -> Result<(), MigrateError> {
    let done = client
        .query_one(
            "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
            &[&SCHEMA],
        )
        .await
        .map_err(db)?
        .get::<_, bool>(0);
    if done {
        return Ok(());
    }
    let mut found = Vec::new();
    for schema in OLD_SCHEMAS {
        let strata_like = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute a
                                JOIN pg_class c ON c.oid = a.attrelid
                                JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = $1 AND c.relname = 'schema_migrations'
                                  AND c.relkind = 'r' AND a.attname = 'checksum'
                                  AND NOT a.attisdropped)
                    AND EXISTS (SELECT 1 FROM pg_class c
                                JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = $1 AND c.relname = 'orgs' AND c.relkind = 'r')",
                &[&schema],
            )
            .await
            .map_err(db)?
            .get::<_, bool>(0);
        if strata_like {
            let has_orgs = client
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {schema}.orgs)"), &[])
                .await
                .map_err(db)?
                .get::<_, bool>(0);
            found.push(OldLayout { schema, has_orgs });
        }
    }
    let from = match found.as_slice() {
        [] => return Ok(()),
        [one] => one.schema,
        [a, b] => {
            let (from, left) = match (a.has_orgs, b.has_orgs) {
                (true, true) => {
                    return Err(MigrateError::Database(format!(
                        "Strata tables with data exist in both {} and {} (an earlier version \
                         created them in ag_catalog with AGE on and in public with AGE off); \
                         keep one: move or drop the other's tables by hand, then start again",
                        a.schema, b.schema
                    )))
                }
                (false, true) => (b.schema, a.schema),
                _ => (a.schema, b.schema),
            };
            tracing::warn!(
                moved = from,
                left_behind = left,
                "Strata tables exist in both {from} and {left}: moving those of {from} \
                 (it has orgs, or neither has) into schema {SCHEMA}; the tables in {left} \
                 are left untouched: inspect and drop them by hand"
            );
            from
        }
        _ => unreachable!("two schemas are looked at"),
    };
    let tx = client.transaction().await.map_err(db)?;
    let mut moved = Vec::new();
    for (kind, name) in OBJECTS {
        let relkind = match kind {
            Kind::Table => "r",
            Kind::Sequence => "S",
        };
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind::text = $3",
                &[&from, name, &relkind],
            )
            .await
            .map_err(db)?
            .is_some();
        if exists {
            tx.batch_execute(&format!(
                "ALTER {} {from}.{name} SET SCHEMA {SCHEMA}",
                kind.sql()
            ))
            .await
            .map_err(db)?;
            moved.push(*name);
        }
    }
    tx.commit().await.map_err(db)?;
    tracing::warn!(
        from,
        to = SCHEMA,
        objects = moved.join(","),
        "moved Strata's tables from {from} into schema {SCHEMA}"
    );
    Ok(())
}

async fn apply_pending(client: &mut tokio_postgres::Client) -> Result<usize, MigrateError> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                 version bigint PRIMARY KEY, name text NOT NULL,
                 checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(db)?;
    let applied: Vec<(i64, String, String)> = client
        .query(
            &format!(
                "SELECT version, name, checksum FROM {SCHEMA}.schema_migrations ORDER BY version"
            ),
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
        // The migrations name their objects unqualified: they land in
        // `strata` whatever the connection's own search_path (with AGE's
        // hook it would be `ag_catalog` first on earlier versions).
        tx.batch_execute(&format!("SET LOCAL search_path = {SCHEMA}"))
            .await
            .map_err(db)?;
        tx.batch_execute(m.sql).await.map_err(db)?;
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
            ),
            &[&m.version, &m.name, &migrate::checksum(m.sql)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(migration = m.name, "applied migration");
    }
    Ok(todo.len())
}
