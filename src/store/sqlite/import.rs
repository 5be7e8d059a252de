//! Imported rows stored as exported (`rules::import`), on the writer
//! thread in one transaction per batch, with outbox rows for what changed.

use super::entities::{insert_row, load as load_entity, store_version, update_row};
use super::threads::Seq;
use super::{audit, outbox, project_exists, relationships, search, sql_err, tenancy, SqliteStore};
use super::{bulk, doc_import};
use crate::domain::export::{EntityExport, RelationshipRecord};
use crate::domain::rules::entities::Ends;
use crate::domain::rules::import::{self as rules, ImportCounts, Verdict};
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::{AuditPlace, ImportItem, Imported};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

fn entity(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    e: &EntityExport,
) -> DomainResult<Imported> {
    let stored = load_entity(conn, scope, &e.entity.id)?;
    let verdict = rules::entity(stored.as_ref().map(|s| &s.entity), &e.entity);
    let Some(after) = verdict.stores_after() else {
        return Ok(Imported { verdict, seq: 0 });
    };
    let mut entity = e.entity.clone();
    entity.change_seq = seq.next();
    let rowid = match &stored {
        None => insert_row(conn, scope, &entity, entity.change_seq)?,
        Some(s) => {
            update_row(conn, s.rowid, &entity)?;
            search::remove(conn, s.rowid)?;
            s.rowid
        }
    };
    for v in e.versions.iter().filter(|v| v.version > after) {
        store_version(conn, scope, v, entity.change_seq)?;
    }
    if entity.deleted_at.is_none() {
        search::index(conn, scope, rowid, &entity.properties)?;
    }
    let op = verdict.feed_op(entity.deleted_at.is_some());
    let change = ("entity", entity.id.as_str(), op, Some(entity.version));
    outbox::record(conn, scope, change, entity.change_seq)?;
    let stored_deleted = stored.as_ref().map(|s| s.entity.deleted_at.is_some());
    match rules::ends(stored_deleted, &entity) {
        Ends::Hide => relationships::hide_touching(conn, scope, &entity.id)?,
        Ends::Revive => relationships::revive_touching(conn, scope, &entity.id)?,
        Ends::Unchanged => {}
    }
    Ok(Imported {
        verdict,
        seq: entity.change_seq,
    })
}

/// Whether each end exists (deleted or not) and is live.
fn end(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<Option<bool>> {
    conn.prepare_cached(
        "SELECT deleted_at IS NULL FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| {
        st.query_row(params![scope.org, scope.project, id], |r| r.get(0))
            .optional()
    })
    .map_err(sql_err)
}

fn relationship(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    r: &RelationshipRecord,
) -> DomainResult<Imported> {
    let rel = &r.relationship;
    let stored = conn
        .prepare_cached(&format!(
            "SELECT {}, deleted_at IS NOT NULL FROM relationships
             WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
            super::rows::REL_COLS
        ))
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, rel.id], |row| {
                Ok((super::rows::relationship(row)?, row.get::<_, bool>(10)?))
            })
            .optional()
        })
        .map_err(sql_err)?;
    let ends = [end(conn, scope, &rel.from)?, end(conn, scope, &rel.to)?];
    let (verdict, live) = rules::relationship(stored.as_ref().map(|(r, d)| (r, *d)), r, ends);
    if verdict.stores_after().is_none() {
        return Ok(Imported { verdict, seq: 0 });
    }
    store_relationship(conn, seq, scope, r, (verdict, live), true)
}

/// Stores a relationship row whose verdict stores it, with its outbox row;
/// `replace`: over the row of its id (see `insert_row`).
pub(super) fn store_relationship(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    r: &RelationshipRecord,
    (verdict, live): (Verdict, bool),
    replace: bool,
) -> DomainResult<Imported> {
    let change_seq = seq.next();
    relationships::insert_row(conn, scope, r, live, change_seq, replace)?;
    let rel = &r.relationship;
    let op = verdict.feed_op(r.deleted_at.is_some());
    let change = ("relationship", rel.id.as_str(), op, Some(rel.version));
    outbox::record(conn, scope, change, change_seq)?;
    Ok(Imported {
        verdict,
        seq: change_seq,
    })
}

fn import(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    caller: &Caller,
    items: &[ImportItem],
    texts: Option<&[Option<bulk::EntityTexts>]>,
) -> DomainResult<Vec<Imported>> {
    project_exists(conn, scope)?;
    let copied = match texts {
        Some(texts) => bulk::store(conn, seq, scope, items, texts)?,
        None => None,
    };
    let done = match copied {
        Some(done) => done,
        None => items
            .iter()
            .map(|item| match item {
                ImportItem::Entity(e) => entity(conn, seq, scope, e),
                ImportItem::Relationship(r) => relationship(conn, seq, scope, r),
                ImportItem::Doc(d) => doc_import::doc(conn, scope, d),
                ImportItem::DocSnapshot(s) => doc_import::snapshot(conn, scope, s),
                ImportItem::DocUpdate(u) => doc_import::update(conn, scope, u),
            })
            .collect::<DomainResult<_>>()?,
    };
    let place = AuditPlace::scope(scope, caller);
    let details = ImportCounts::audit_details(done.iter().map(|d| &d.verdict));
    audit::record(conn, &place, "project.import", &scope.project, details)?;
    Ok(done)
}

#[async_trait]
impl ImportStore for SqliteStore {
    async fn import(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: Vec<ImportItem>,
        fresh: bool,
    ) -> DomainResult<Vec<Imported>> {
        let (s, caller) = (scope.clone(), caller.clone());
        // The fast path's texts are written out off the writer thread.
        let (items, texts) = if fresh {
            tokio::task::spawn_blocking(move || {
                let texts = bulk::texts(&items);
                (items, Some(texts))
            })
            .await
            .map_err(DomainError::internal)?
        } else {
            (items, None)
        };
        // The items come back to be freed here: freeing a batch's JSON
        // took a tenth of the writer thread's time.
        let (done, _items) = self
            .writer
            .write(move |conn, seq| {
                import(conn, seq, &s, &caller, &items, texts.as_deref())
                    .map(|done| (done, (items, texts)))
            })
            .await?;
        Ok(done)
    }

    async fn import_start(&self, scope: &Scope) -> DomainResult<bool> {
        let s = scope.clone();
        self.writer
            .write(move |conn, _| bulk::start(conn, &s))
            .await
    }

    async fn import_finish(&self) -> DomainResult<()> {
        // One index per transaction: other writes go on between builds.
        while self
            .writer
            .write(|conn, _| bulk::build_deferred(conn).map_err(sql_err))
            .await?
        {}
        Ok(())
    }

    async fn import_org(&self, caller: &Caller, org: &Org) -> DomainResult<bool> {
        let (caller, org) = (caller.clone(), org.clone());
        self.writer
            .write(move |conn, _| crate::store::made(tenancy::insert_org(conn, &caller, org)))
            .await
    }

    async fn import_project(&self, caller: &Caller, project: &Project) -> DomainResult<bool> {
        let (caller, project) = (caller.clone(), project.clone());
        self.writer
            .write(move |conn, _| {
                crate::store::made(tenancy::insert_project(conn, &caller, project))
            })
            .await
    }

    async fn import_audit(
        &self,
        events: Vec<crate::domain::export::AuditRecord>,
    ) -> DomainResult<u64> {
        self.writer
            .write(move |conn, _| audit::insert_all(conn, &events))
            .await
    }
}
