//! The fast path of imports into a project that held nothing when the
//! import began (`ImportStore::import` with `fresh`): the batch's rows go
//! in by `COPY ... FROM STDIN BINARY`, without the careful path's reading
//! and row-locking of what the project holds (`import.rs`). A row that is
//! there after all (written meanwhile, or twice in the file) fails the copy
//! on its primary key: the batch rolls back to its savepoint and takes the
//! careful path, so the result is the same either way.
//!
//! A relationship batch still reads its ends, shared-locked, as the lock
//! protocol asks (locks.rs): their liveness is the relationship's.

use super::import::{
    imported, live_ends, optional_time, outbox, relationship_outbox, sequences, Change,
};
use super::rows::{parse_time, pg_err};
use crate::domain::export::{EntityExport, RelationshipRecord};
use crate::domain::rules::entities::Ends;
use crate::domain::rules::import as rules;
use crate::domain::*;
use crate::store::Imported;
use deadpool_postgres::Object as Client;
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};

/// Runs `copy` inside a savepoint; `None` (rolled back) when a primary key
/// refused a row.
async fn or_careful<T>(
    c: &Client,
    copy: impl std::future::Future<Output = DomainResult<T>>,
) -> DomainResult<Option<T>> {
    c.batch_execute("SAVEPOINT fresh").await.map_err(pg_err)?;
    match copy.await {
        Ok(done) => {
            c.batch_execute("RELEASE SAVEPOINT fresh")
                .await
                .map_err(pg_err)?;
            Ok(Some(done))
        }
        Err(e) if is_unique_violation(&e) => {
            c.batch_execute("ROLLBACK TO SAVEPOINT fresh; RELEASE SAVEPOINT fresh")
                .await
                .map_err(pg_err)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn is_unique_violation(e: &DomainError) -> bool {
    let DomainError::Storage(source) = e else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Copies `rows` of `types` into `table (columns)`.
async fn copy_in(
    c: &Client,
    table_columns: &str,
    types: &[Type],
    rows: impl Iterator<Item = Vec<Box<dyn ToSql + Sync + Send + '_>>>,
) -> DomainResult<()> {
    let sink = c
        .copy_in(&format!("COPY {table_columns} FROM STDIN BINARY"))
        .await
        .map_err(pg_err)?;
    let writer = BinaryCopyInWriter::new(sink, types);
    pin_mut!(writer);
    for row in rows {
        let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|v| &**v as _).collect();
        writer.as_mut().write(&refs).await.map_err(pg_err)?;
    }
    writer.finish().await.map_err(pg_err)?;
    Ok(())
}

type Row<'a> = Vec<Box<dyn ToSql + Sync + Send + 'a>>;

/// The columns entity and relationship rows share, `properties` to
/// `deleted_at`, with their types (`WRITTEN_TYPES`).
fn written<'a>(
    properties: &'a Properties,
    version: i64,
    (created_at, updated_at): (&str, &str),
    (created_by, updated_by): (&'a str, &'a str),
    deleted_at: &Option<String>,
) -> DomainResult<Row<'a>> {
    Ok(vec![
        Box::new(Json(properties)),
        Box::new(version),
        Box::new(parse_time(created_at)?),
        Box::new(parse_time(updated_at)?),
        Box::new(created_by),
        Box::new(updated_by),
        Box::new(optional_time(deleted_at)?),
    ])
}

const WRITTEN_TYPES: [Type; 7] = [
    Type::JSONB,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

/// Stores new entities with their versions; `None` when one was there.
pub async fn entities(
    c: &Client,
    scope: &Scope,
    batch: &[&EntityExport],
) -> DomainResult<Option<Vec<Imported>>> {
    let verdicts: Vec<_> = batch
        .iter()
        .map(|e| rules::entity(None, &e.entity))
        .collect();
    let seqs = sequences(c, batch.len()).await?;
    let mut entity_rows: Vec<Row> = Vec::with_capacity(batch.len());
    let mut version_rows: Vec<Row> = Vec::new();
    for ((e, verdict), &seq) in batch.iter().zip(&verdicts).zip(&seqs) {
        // A new entity has no relationships to hide or revive.
        debug_assert_eq!(rules::ends(None, &e.entity), Ends::Unchanged);
        let after = verdict.stores_after().unwrap_or(i64::MAX);
        let en = &e.entity;
        let mut row: Row = vec![
            Box::new(scope.org.as_str()),
            Box::new(scope.project.as_str()),
            Box::new(en.id.as_str()),
            Box::new(en.entity_type.as_str()),
        ];
        row.extend(written(
            &en.properties,
            en.version,
            (&en.created_at, &en.updated_at),
            (&en.created_by, &en.updated_by),
            &en.deleted_at,
        )?);
        row.push(Box::new(seq));
        entity_rows.push(row);
        for v in e.versions.iter().filter(|v| v.version > after) {
            version_rows.push(vec![
                Box::new(scope.org.as_str()),
                Box::new(scope.project.as_str()),
                Box::new(v.entity.as_str()),
                Box::new(v.version),
                Box::new(v.parent),
                Box::new(v.op.as_str()),
                Box::new(v.entity_type.as_str()),
                Box::new(v.deleted),
                Box::new(v.actor.as_str()),
                Box::new(parse_time(&v.at)?),
                Box::new(Json(&v.patch)),
                Box::new(v.snapshot.as_ref().map(Json)),
                Box::new(i32::try_from(v.chain).unwrap_or(i32::MAX)),
                Box::new(seq),
            ]);
        }
    }
    let copied = or_careful(c, async {
        copy_in(
            c,
            "entities (org_id, project_id, id, type, properties, version, created_at,
                 updated_at, created_by, updated_by, deleted_at, seq)",
            &[&[Type::TEXT; 4][..], &WRITTEN_TYPES, &[Type::INT8]].concat(),
            entity_rows.into_iter(),
        )
        .await?;
        copy_in(
            c,
            "entity_versions (org_id, project_id, entity_id, version, parent_version, op,
                 type, deleted, actor, at, patch, snapshot, chain, seq)",
            &[
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::BOOL,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::JSONB,
                Type::JSONB,
                Type::INT4,
                Type::INT8,
            ],
            version_rows.into_iter(),
        )
        .await
    })
    .await?;
    if copied.is_none() {
        return Ok(None);
    }
    let changes: Vec<Change> = batch
        .iter()
        .zip(&verdicts)
        .zip(&seqs)
        .map(|((e, verdict), &seq)| Change {
            seq,
            id: &e.entity.id,
            version: e.entity.version,
            op: verdict.feed_op(e.entity.deleted_at.is_some()),
        })
        .collect();
    outbox(c, scope, "entity", &changes).await?;
    Ok(Some(
        verdicts
            .into_iter()
            .zip(seqs)
            .map(|(verdict, seq)| Imported { verdict, seq })
            .collect(),
    ))
}

/// Stores new relationships; `None` when one was there.
pub async fn relationships(
    c: &Client,
    scope: &Scope,
    batch: &[&RelationshipRecord],
) -> DomainResult<Option<Vec<Imported>>> {
    let live_ends = live_ends(c, scope, batch).await?;
    let (verdicts, live): (Vec<_>, Vec<bool>) = batch
        .iter()
        .map(|r| {
            let rel = &r.relationship;
            let ends = [
                live_ends.get(&rel.from).copied(),
                live_ends.get(&rel.to).copied(),
            ];
            rules::relationship(None, r, ends)
        })
        .unzip();
    let storing: Vec<usize> = (0..batch.len())
        .filter(|&i| verdicts[i].stores_after().is_some())
        .collect();
    let seqs = sequences(c, storing.len()).await?;
    let mut rel_rows: Vec<Row> = Vec::with_capacity(storing.len());
    for (&i, &seq) in storing.iter().zip(&seqs) {
        let (r, rel) = (batch[i], &batch[i].relationship);
        let mut row: Row = vec![
            Box::new(scope.org.as_str()),
            Box::new(scope.project.as_str()),
            Box::new(rel.id.as_str()),
            Box::new(rel.rel_type.as_str()),
            Box::new(rel.from.as_str()),
            Box::new(rel.to.as_str()),
        ];
        row.extend(written(
            &rel.properties,
            rel.version,
            (&rel.created_at, &rel.updated_at),
            (&rel.created_by, &rel.updated_by),
            &r.deleted_at,
        )?);
        row.extend([
            Box::new(live[i]) as Box<dyn ToSql + Sync + Send>,
            Box::new(seq),
        ]);
        rel_rows.push(row);
    }
    let copied = or_careful(
        c,
        copy_in(
            c,
            "relationships (org_id, project_id, id, type, from_id, to_id, properties,
                 version, created_at, updated_at, created_by, updated_by, deleted_at, live, seq)",
            &[
                &[Type::TEXT; 6][..],
                &WRITTEN_TYPES,
                &[Type::BOOL, Type::INT8],
            ]
            .concat(),
            rel_rows.into_iter(),
        ),
    )
    .await?;
    if copied.is_none() {
        return Ok(None);
    }
    relationship_outbox(c, scope, (batch, &verdicts), &storing, &seqs).await?;
    Ok(Some(imported(verdicts, &storing, seqs)))
}
