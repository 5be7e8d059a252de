//! Full-text index rows (FTS5, porter stemming, prefix indexes) and the
//! search over them, ranked by BM25 with the project's counts (`rank.rs`).
//! Kept in the write's own transaction; deleted entities have no row.
//!
//! Writes are staged, not applied at once: FTS5 flushes its pending terms
//! to a new on-disk segment at every SAVEPOINT, and the group commit opens
//! one savepoint per request, so direct writes cost a segment (and later
//! merges) per request. Jobs stage their changes in a TEMP table, which
//! rolls back with a failed job's savepoint; the writer applies each row's
//! net change once per group, just before COMMIT.

use super::SqliteStore;
use super::{rows, sql_err};
use crate::domain::*;
use crate::search;
use crate::store::prelude::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

/// The FTS token that confines a match to one project.
pub fn scope_token(conn: &Connection, scope: &Scope) -> DomainResult<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT pk FROM projects WHERE org_id = ?1 AND id = ?2")
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|pk| pk.map(|pk| format!("p{pk}")))
        .map_err(sql_err)
}

pub fn index(conn: &Connection, scope: &Scope, rowid: i64, props: &Properties) -> DomainResult<()> {
    let body = search::text_of(props);
    if body.is_empty() {
        return Ok(());
    }
    let token = scope_token(conn, scope)?
        .ok_or_else(|| DomainError::not_found(format!("project {}", scope.project)))?;
    stage(conn, rowid, Some((&token, &body)))
}

pub fn remove(conn: &Connection, rowid: i64) -> DomainResult<()> {
    stage(conn, rowid, None)
}

/// Indexes `rowid` at once, unstaged, with its text (`search::text_of`)
/// already made: for a bulk load, whose many rows share one savepoint (so
/// one FTS5 segment per batch).
pub fn index_text(conn: &Connection, token: &str, rowid: i64, body: &str) -> DomainResult<()> {
    if body.is_empty() {
        return Ok(());
    }
    conn.prepare_cached("INSERT INTO entity_fts (rowid, scope, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![rowid, token, body]))
        .map_err(sql_err)?;
    Ok(())
}

/// Creates the staging table on the writer's connection (TEMP: private to
/// it, never in the WAL).
pub fn create_staging(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS fts_staged (
             seq INTEGER PRIMARY KEY, target INTEGER NOT NULL, scope TEXT, body TEXT)",
    )
}

/// `Some((scope, body))` indexes `rowid`; `None` removes it.
fn stage(conn: &Connection, rowid: i64, row: Option<(&str, &str)>) -> DomainResult<()> {
    let (scope, body) = row.unzip();
    conn.prepare_cached("INSERT INTO temp.fts_staged (target, scope, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![rowid, scope, body]))
        .map_err(sql_err)?;
    Ok(())
}

/// Applies the staged changes, then forgets them. Runs inside the group's
/// transaction, outside any job's savepoint.
///
/// Only each row's net change is applied, and every delete before any
/// insert: an FTS5 delete flushes the pending inserts to a new segment, so
/// interleaving them (as a request stream of patches does) would cost a
/// segment per delete again. A row's first staged change tells whether it
/// was indexed before the group (an entity is only ever re-indexed after a
/// removal); its last one is the state to leave.
pub fn apply_staged(conn: &Connection) -> rusqlite::Result<()> {
    let staged: Vec<(i64, Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT target, scope, body FROM temp.fts_staged ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if staged.is_empty() {
        return Ok(());
    }
    // target -> (was indexed before the group, final (scope, body) if indexed)
    let mut net: std::collections::BTreeMap<i64, (bool, Option<(String, String)>)> =
        std::collections::BTreeMap::new();
    for (target, scope, body) in staged {
        let last = scope.zip(body);
        net.entry(target)
            .and_modify(|(_, state)| *state = last.clone())
            .or_insert((last.is_none(), last));
    }
    let mut delete = conn.prepare_cached("DELETE FROM entity_fts WHERE rowid = ?1")?;
    for (target, _) in net.iter().filter(|(_, (before, _))| *before) {
        delete.execute([target])?;
    }
    let mut insert =
        conn.prepare_cached("INSERT INTO entity_fts (rowid, scope, body) VALUES (?1, ?2, ?3)")?;
    for (target, (_, state)) in &net {
        if let Some((scope, body)) = state {
            insert.execute(params![target, scope, body])?;
        }
    }
    conn.prepare_cached("DELETE FROM temp.fts_staged")?
        .execute([])?;
    Ok(())
}

pub fn search(
    conn: &Connection,
    scope: &Scope,
    q: &str,
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    let terms = search::query_terms(q);
    if terms.is_empty() {
        return Err(DomainError::BadRequest(
            "q must contain at least one word".into(),
        ));
    }
    if scope_token(conn, scope)?.is_none() {
        return Err(DomainError::not_found(format!("project {}", scope.project)));
    }
    let (rank, stats) = match project_stats(conn, scope, &terms)? {
        None => ("bm25(entity_fts, 0.0, 1.0)".to_owned(), Vec::new()),
        Some(stats) => {
            let args: String = (0..stats.len()).map(|i| format!(", ?{}", i + 6)).collect();
            (format!("strata_bm25(entity_fts{args})"), stats)
        }
    };
    // Rank first, then read whole rows for the best `limit` only.
    let sql = format!(
        "SELECT e.rowid, e.id, e.type, e.properties, e.version, e.created_at,
                e.updated_at, e.created_by, e.updated_by, e.deleted_at, e.seq, hit.rank
         FROM (SELECT entity_fts.rowid AS rid, {rank} AS rank
               FROM entity_fts JOIN entities m ON m.rowid = entity_fts.rowid
               WHERE entity_fts MATCH ?1 AND m.deleted_at IS NULL
                 AND m.org_id = ?2 AND m.project_id = ?3 AND (?4 IS NULL OR m.type = ?4)
               ORDER BY rank LIMIT ?5) hit
         JOIN entities e ON e.rowid = hit.rid
         ORDER BY hit.rank"
    );
    let mut st = conn.prepare_cached(&sql).map_err(sql_err)?;
    // The project is not part of the expression: matching the project's
    // scope token intersects with a doclist as long as the project (55 ms
    // of a 70 ms query at 1M entities); the join on `entities` confines
    // hits to the project.
    let fixed: [&dyn rusqlite::ToSql; 5] = [
        &search::query::fts5_match(&terms),
        &scope.org,
        &scope.project,
        &entity_type,
        &(limit as i64),
    ];
    let args = fixed
        .into_iter()
        .chain(stats.iter().map(|n| n as &dyn rusqlite::ToSql));
    let rows = st
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((rows::entity(r)?, r.get::<_, f64>(11)?))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err)?;
    Ok(rows
        .into_iter()
        .map(|(entity, rank)| SearchHit {
            highlights: search::highlights(&entity.properties, &terms),
            entity,
            score: -rank,
        })
        .collect())
}

/// The counts `strata_bm25` (`rank.rs`) scores with: the project's live
/// entities, then how many of them match each term. None when no other
/// project has an entity, as FTS5's own counts are then the project's.
/// Each count walks the term's matches in the index (tens of ms for a
/// word most of 1M entities hold); this path serves only while the text
/// index catches up (`search/text_index`).
fn project_stats(
    conn: &Connection,
    scope: &Scope,
    terms: &[String],
) -> DomainResult<Option<Vec<i64>>> {
    let count = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> DomainResult<i64> {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.query_row(params, |r| r.get(0)))
            .map_err(sql_err)
    };
    let others = count(
        "SELECT EXISTS (SELECT 1 FROM entities WHERE (org_id, project_id) < (?1, ?2))
             OR EXISTS (SELECT 1 FROM entities WHERE (org_id, project_id) > (?1, ?2))",
        &[&scope.org, &scope.project],
    )?;
    if others == 0 {
        return Ok(None);
    }
    let mut stats = vec![count(
        "SELECT count(*) FROM entities
         WHERE org_id = ?1 AND project_id = ?2 AND deleted_at IS NULL",
        &[&scope.org, &scope.project],
    )?];
    for term in terms {
        stats.push(count(
            // CROSS JOIN keeps the index's matches the outer loop: the
            // planner would walk the project's entities and run the match
            // once per row (minutes at 300k).
            "SELECT count(*) FROM entity_fts CROSS JOIN entities m ON m.rowid = entity_fts.rowid
             WHERE entity_fts MATCH ?1 AND m.deleted_at IS NULL
               AND m.org_id = ?2 AND m.project_id = ?3",
            &[
                &search::query::fts5_match(std::slice::from_ref(term)),
                &scope.org,
                &scope.project,
            ],
        )?);
    }
    Ok(Some(stats))
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>> {
        let (s, q, t) = (
            scope.clone(),
            query.to_owned(),
            entity_type.map(str::to_owned),
        );
        self.read(move |conn| search(conn, &s, &q, t.as_deref(), limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{connect, SqliteConfig, SqliteStore};
    use crate::domain::*;
    use crate::store::prelude::*;

    async fn put(store: &SqliteStore, scope: &Scope, bodies: &[&str]) {
        let ops = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| WriteOp::CreateEntity {
                id: format!("e{i}"),
                entity_type: "note".into(),
                properties: serde_json::json!({ "body": body })
                    .as_object()
                    .cloned()
                    .unwrap(),
            })
            .collect();
        store.write(scope, &Caller::new("t"), ops).await.unwrap();
    }

    /// The FTS5 path's scores use the project's counts: another project
    /// holding the same words (rows of the same length, so the index-wide
    /// mean stays) changes none of them, and they equal FTS5's own bm25
    /// from when the project was alone.
    #[tokio::test]
    async fn scores_do_not_depend_on_other_projects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(path.to_str().unwrap(), &SqliteConfig::default()).unwrap();
        let caller = Caller::new("t");
        store.create_org(&caller, "o", "O").await.unwrap();
        for p in ["a", "b"] {
            store.create_project(&caller, "o", p, p).await.unwrap();
        }
        let (a, b) = (Scope::new("o", "a"), Scope::new("o", "b"));
        put(
            &store,
            &a,
            &["apple pie", "apple apple", "pear tart", "plum jam"],
        )
        .await;
        let conn = connect(&path, &SqliteConfig::default(), true).unwrap();
        let scores = |q: &str| -> Vec<(String, f64)> {
            let hits = super::search(&conn, &a, q, None, 10).unwrap();
            hits.into_iter().map(|h| (h.entity.id, h.score)).collect()
        };
        let alone = [scores("apple"), scores("apple pie"), scores("tart")];
        assert_eq!(alone[0].len(), 2);
        assert!(super::project_stats(&conn, &a, &["apple".into()])
            .unwrap()
            .is_none());

        let crowd: Vec<String> = (0..40)
            .map(|i| if i % 4 == 0 { "plum pie" } else { "apple tart" }.to_owned())
            .collect();
        put(
            &store,
            &b,
            &crowd.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(
            super::project_stats(&conn, &a, &["apple".into()]).unwrap(),
            Some(vec![4, 2])
        );
        let crowded = [scores("apple"), scores("apple pie"), scores("tart")];
        for (before, after) in alone.iter().zip(&crowded) {
            assert_eq!(before.len(), after.len());
            for ((id, s), (id2, s2)) in before.iter().zip(after) {
                assert_eq!(id, id2);
                assert!((s - s2).abs() < 1e-9, "{id}: {s} alone, {s2} beside b");
            }
        }
        store.close().await;
    }
}
