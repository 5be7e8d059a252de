//! The fast path of imports into a project that held nothing when the
//! import began (`ImportStore::import` with `fresh`): every row is inserted
//! as it comes, without first reading what the project holds. A row that is
//! there after all (written meanwhile, or twice in the file) fails its
//! insert on a unique constraint; the batch is then rolled back and stored
//! the careful way (`import.rs`), so the result is the same either way.
//!
//! A load into a store with no entity and no relationship at all also
//! defers the two tables' secondary indexes: they are dropped before the
//! load and built after it, one sort each, instead of taking millions of
//! inserts at random keys (2.8 times faster for 1M relationships). Their
//! definitions are kept in `deferred_indexes`, written in the drop's
//! transaction, so a load cut short by a crash is completed at the next
//! open. Queries stay correct without them, only slower; the graph walks'
//! index hints are left out meanwhile (`graph::index_hint`).

use super::entities::{insert_row_json, store_version_json, VersionJson};
use super::threads::Seq;
use super::{outbox, search, sql_err};
use crate::domain::export::{EntityExport, RelationshipRecord};
use crate::domain::rules::entities::Ends;
use crate::domain::rules::import as rules;
use crate::domain::*;
use crate::store::Imported;
use rusqlite::{params, Connection, OptionalExtension};

/// Whether the project holds no entity and no relationship; when the whole
/// store holds none, the secondary indexes are deferred too.
pub fn start(conn: &Connection, scope: &Scope) -> DomainResult<bool> {
    let store_empty: bool = conn
        .query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM entities) AND NOT EXISTS (SELECT 1 FROM relationships)",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if store_empty {
        defer_indexes(conn).map_err(sql_err)?;
        return Ok(true);
    }
    conn.prepare_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM entities WHERE org_id = ?1 AND project_id = ?2)
            AND NOT EXISTS (SELECT 1 FROM relationships WHERE org_id = ?1 AND project_id = ?2)",
    )
    .and_then(|mut st| st.query_row(params![scope.org, scope.project], |r| r.get(0)))
    .map_err(sql_err)
}

/// Drops the secondary indexes of entities and relationships, keeping
/// their definitions (the unique constraints' own indexes stay, and
/// `entities_deleted`, which the load reads and which holds no live row).
fn defer_indexes(conn: &Connection) -> rusqlite::Result<()> {
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name IN ('entities', 'relationships')
               AND sql IS NOT NULL AND name <> 'entities_deleted'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, sql) in indexes {
        conn.execute(
            "INSERT INTO deferred_indexes (name, sql) VALUES (?1, ?2)",
            params![name, sql],
        )?;
        conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(())
}

/// Builds one deferred index; false when none is left.
pub fn build_deferred(conn: &Connection) -> rusqlite::Result<bool> {
    let next: Option<(String, String)> = conn
        .query_row(
            "SELECT name, sql FROM deferred_indexes ORDER BY name LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((name, sql)) = next else {
        return Ok(false);
    };
    conn.execute_batch(&sql)?;
    conn.execute("DELETE FROM deferred_indexes WHERE name = ?1", [name])?;
    Ok(true)
}

/// The texts an imported entity's rows hold, written out before its batch
/// reaches the writer thread: serialising them there was an eighth of the
/// thread's time, while the thread that reads the file waited on it.
pub struct EntityTexts {
    properties: String,
    versions: Vec<VersionJson>,
    /// What the full-text index holds (`search::text_of`).
    body: String,
}

/// The texts of each entity among `items` (None for other items).
pub fn texts(items: &[crate::store::ImportItem]) -> Vec<Option<EntityTexts>> {
    items
        .iter()
        .map(|item| match item {
            crate::store::ImportItem::Entity(e) => Some(EntityTexts {
                properties: serde_json::to_string(&e.entity.properties)
                    .expect("JSON maps serialise"),
                versions: e.versions.iter().map(VersionJson::of).collect(),
                body: crate::search::text_of(&e.entity.properties),
            }),
            _ => None,
        })
        .collect()
}

/// Stores `items` with plain inserts, with their `texts`; `None` (with
/// nothing stored) when a row was there already.
pub fn store(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    items: &[crate::store::ImportItem],
    texts: &[Option<EntityTexts>],
) -> DomainResult<Option<Vec<Imported>>> {
    use crate::store::ImportItem;
    let token = search::scope_token(conn, scope)?
        .ok_or_else(|| DomainError::not_found(format!("project {}", scope.project)))?;
    let ends = ends_of(conn, scope, items)?;
    conn.execute_batch("SAVEPOINT fresh").map_err(sql_err)?;
    let stored = items
        .iter()
        .zip(texts)
        .map(|(item, texts)| match (item, texts) {
            (ImportItem::Entity(e), Some(texts)) => entity(conn, seq, scope, &token, e, texts),
            (ImportItem::Entity(_), None) => Err(DomainError::internal("an entity's texts")),
            (ImportItem::Relationship(r), _) => relationship(conn, seq, scope, &ends, r),
            (ImportItem::Doc(d), _) => super::doc_import::doc(conn, scope, d),
            (ImportItem::DocSnapshot(s), _) => super::doc_import::snapshot(conn, scope, s),
            (ImportItem::DocUpdate(u), _) => super::doc_import::update(conn, scope, u),
        })
        .collect::<DomainResult<Vec<_>>>();
    match stored {
        Ok(done) => {
            conn.execute_batch("RELEASE fresh").map_err(sql_err)?;
            Ok(Some(done))
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO fresh; RELEASE fresh")
                .map_err(sql_err)?;
            if is_constraint(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A unique (or other) constraint refused an insert.
fn is_constraint(e: &DomainError) -> bool {
    let DomainError::Storage(source) = e else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        == Some(rusqlite::ErrorCode::ConstraintViolation)
}

fn entity(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    token: &str,
    e: &EntityExport,
    texts: &EntityTexts,
) -> DomainResult<Imported> {
    let verdict = rules::entity(None, &e.entity);
    // A new entity has no relationships to hide or revive.
    debug_assert_eq!(rules::ends(None, &e.entity), Ends::Unchanged);
    let Some(after) = verdict.stores_after() else {
        return Ok(Imported { verdict, seq: 0 });
    };
    let change_seq = seq.next();
    let rowid = insert_row_json(conn, scope, &e.entity, &texts.properties, change_seq)?;
    for (v, json) in e.versions.iter().zip(&texts.versions) {
        if v.version > after {
            store_version_json(conn, scope, v, json, change_seq)?;
        }
    }
    if e.entity.deleted_at.is_none() {
        search::index_text(conn, token, rowid, &texts.body)?;
    }
    let op = verdict.feed_op(e.entity.deleted_at.is_some());
    let change = ("entity", e.entity.id.as_str(), op, Some(e.entity.version));
    outbox::record(conn, scope, change, change_seq)?;
    Ok(Imported {
        verdict,
        seq: change_seq,
    })
}

/// The ends of the relationships among `items` the project has, with
/// whether each is live. One query for the batch, its ids sorted so the
/// seeks walk the indexes in order, answered from two indexes without
/// reading an entity's row (`ENDS`): at 1M entities those reads were half
/// of a relationship's import.
fn ends_of(
    conn: &Connection,
    scope: &Scope,
    items: &[crate::store::ImportItem],
) -> DomainResult<LiveEnds> {
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|item| match item {
            crate::store::ImportItem::Relationship(r) => Some(&r.relationship),
            _ => None,
        })
        .flat_map(|rel| [rel.from.as_str(), rel.to.as_str()])
        .collect();
    query_ends(conn, scope, ids)
}

/// Which of the ids in the JSON array ?3 project ?2 of org ?1 has, each
/// with whether it is live. The planner would read a deleted row through
/// the unique index (one row by its statistics), hence `INDEXED BY`.
const ENDS: &str = "SELECT j.value, NOT EXISTS (SELECT 1 FROM entities AS d
        INDEXED BY entities_deleted WHERE d.org_id = ?1 AND d.project_id = ?2
          AND d.id = j.value AND d.deleted_at IS NOT NULL)
    FROM json_each(?3) AS j
    WHERE EXISTS (SELECT 1 FROM entities AS e
        WHERE e.org_id = ?1 AND e.project_id = ?2 AND e.id = j.value)";

fn query_ends(conn: &Connection, scope: &Scope, mut ids: Vec<&str>) -> DomainResult<LiveEnds> {
    if ids.is_empty() {
        return Ok(LiveEnds(Vec::new()));
    }
    ids.sort_unstable();
    ids.dedup();
    let list = serde_json::to_string(&ids).expect("strings serialise");
    let mut found: Vec<(String, bool)> = conn
        .prepare_cached(ENDS)
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, list], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .map_err(sql_err)?;
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(LiveEnds(found))
}

/// Relationship ends the project has, sorted by id, with their liveness.
struct LiveEnds(Vec<(String, bool)>);

impl LiveEnds {
    /// Whether `id` is live; `None` when the project lacks it.
    fn live(&self, id: &str) -> Option<bool> {
        let at = self.0.binary_search_by(|(e, _)| e.as_str().cmp(id)).ok()?;
        Some(self.0[at].1)
    }
}

fn relationship(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    live_ends: &LiveEnds,
    r: &RelationshipRecord,
) -> DomainResult<Imported> {
    let rel = &r.relationship;
    let ends = [live_ends.live(&rel.from), live_ends.live(&rel.to)];
    let (verdict, live) = rules::relationship(None, r, ends);
    if verdict.stores_after().is_none() {
        return Ok(Imported { verdict, seq: 0 });
    }
    super::import::store_relationship(conn, seq, scope, r, (verdict, live), false)
}

#[cfg(test)]
mod tests {
    use super::super::{SqliteConfig, SqliteStore};
    use crate::domain::{Caller, Scope};
    use crate::store::prelude::*;

    fn secondary_indexes(path: &std::path::Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut st = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
                   AND tbl_name IN ('entities', 'relationships') ORDER BY name",
            )
            .unwrap();
        let names = st.query_map([], |r| r.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    /// The ends of a batch are read from indexes alone, live or not.
    #[tokio::test]
    async fn ends_are_read_from_indexes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(path.to_str().unwrap(), &SqliteConfig::default()).unwrap();
        store.close().await;

        let conn = rusqlite::Connection::open(&path).unwrap();
        for (id, deleted) in [("a", None), ("b", Some("2026-12-05T00:00:00.000000Z"))] {
            conn.execute(
                "INSERT INTO entities (org_id, project_id, id, type, properties, version,
                     created_at, updated_at, created_by, updated_by, deleted_at, seq)
                 VALUES ('o', 'p', ?1, 't', '{}', 1, '', '', 'x', 'x', ?2, 1)",
                rusqlite::params![id, deleted],
            )
            .unwrap();
        }
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::ENDS))
            .unwrap()
            .query_map(rusqlite::params!["o", "p", "[]"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let reads: Vec<&String> = plan.iter().filter(|p| p.contains("SEARCH")).collect();
        assert_eq!(reads.len(), 2, "{plan:?}");
        assert!(
            reads.iter().all(|p| p.contains("COVERING INDEX")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|p| p.contains("entities_deleted")),
            "{plan:?}"
        );

        let scope = Scope::new("o", "p");
        let ends = super::query_ends(&conn, &scope, vec!["c", "b", "a", "b"]).unwrap();
        assert_eq!(
            [ends.live("a"), ends.live("b"), ends.live("c")],
            [Some(true), Some(false), None]
        );
    }

    /// A load into an empty store drops the secondary indexes (but the one
    /// it reads) and its end builds them; a load cut short leaves them to the next open.
    #[tokio::test]
    async fn deferred_indexes_are_built_by_the_finish_or_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let url = path.to_str().unwrap();
        let open = || SqliteStore::open(url, &SqliteConfig::default()).unwrap();
        let store = open();
        let caller = Caller::new("test");
        store.create_org(&caller, "o", "O").await.unwrap();
        store.create_project(&caller, "o", "p", "P").await.unwrap();
        let all = secondary_indexes(&path);
        assert!(all.contains(&"relationships_out".to_owned()), "{all:?}");

        let scope = Scope::new("o", "p");
        assert!(store.import_start(&scope).await.unwrap());
        assert_eq!(secondary_indexes(&path), ["entities_deleted"]);
        store.import_finish().await.unwrap();
        assert_eq!(secondary_indexes(&path), all);

        // Cut short: closed between start and finish.
        assert!(store.import_start(&scope).await.unwrap());
        store.close().await;
        assert_eq!(secondary_indexes(&path), ["entities_deleted"]);
        let store = open();
        assert_eq!(secondary_indexes(&path), all);
        store.close().await;
    }
}
