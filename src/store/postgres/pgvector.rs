//! pgvector under `entity_vectors`, where the server has the extension: a
//! `vector` column beside the stored bytes and one HNSW index per (model,
//! dimensions), so a semantic search walks a graph instead of reading every
//! vector of the project over the wire.
//!
//! Why outside the numbered migrations: those run alike on every server and
//! must not depend on an extension that may be installed later (or never:
//! Debian's PostgreSQL 15 has none). Like AGE's setup, this runs at open,
//! is idempotent, and picks the store's search path once (`PgStore::vectors`).
//!
//! Why an index per model: an HNSW index needs one fixed dimension, and the
//! column holds every model's vectors (a model switch re-embeds into the
//! same rows). Each index is partial (`model = '...'` and that dimension)
//! over the expression `embedding::vector(N)`, and the search names the same
//! predicate and expression, so the planner can prove it applies. The model
//! is written into the SQL as a literal (quoted by `literal`): with a
//! parameter, a generic plan could not match the partial index.
//!
//! The bytes column stays the truth: scores are recomputed from it, so both
//! search paths (and SQLite) rank with the same arithmetic.

use super::rows::pg_err;
use crate::domain::*;
use crate::search::vectors::{dot, TopK};
use bytes::{BufMut, BytesMut};
use deadpool_postgres::GenericClient;
use std::collections::HashSet;
use std::sync::Mutex;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// Serialises the setup and index builds of daemons starting together
/// (two `CREATE ... IF NOT EXISTS` racing can both try to create).
const SETUP_LOCK: i64 = 0x5354_5256_4543;

/// Rows per statement when filling the column of rows written before
/// pgvector was there.
const BACKFILL_BATCH: i64 = 1000;

/// HNSW build parameters: pgvector's defaults. bench/RESULTS.md ("pgvector
/// HNSW") has what they give at 100k and 1M vectors; recall is tuned at
/// search time (`hnsw_ef_search`), which needs no rebuild.
const HNSW_WITH: &str = "m = 16, ef_construction = 64";

/// The most dimensions a pgvector `vector` holds; longer vectors keep only
/// their bytes (and the exact scan).
pub const MAX_DIMS: usize = 16_000;
/// The most dimensions an HNSW index over `vector` takes: a longer model
/// gets no index, and its searches sort the model's rows in SQL (exact).
const MAX_INDEXED_DIMS: usize = 2_000;

/// Candidates the graph walk keeps by default (`hnsw.ef_search`): at
/// least this many, and twice the limit when more are asked for, up to
/// pgvector's cap. `PgConfig::hnsw_ef_search` overrides it.
const EF_SEARCH_DEFAULT: usize = 100;
const EF_SEARCH_MAX: usize = 1000;

/// The extension as this database has it.
pub struct Pgvector {
    /// Schema of the extension's types, functions and operators (quoted):
    /// Strata's connections search only `strata`, so every name is qualified.
    schema: String,
    /// pgvector ≥ 0.8: a filtered walk continues until it has enough rows
    /// (`hnsw.iterative_scan`) instead of returning fewer.
    iterative: bool,
    /// The least `hnsw.ef_search` of a search.
    ef_search: usize,
    /// (model, dimensions) whose index this process has made sure of. A
    /// std mutex: held for a lookup or an insert, never across an await.
    indexed: Mutex<HashSet<(String, usize)>>,
}

/// A vector parameter in pgvector's binary form (dimensions, a reserved
/// zero, then big-endian f32s), so a batch travels without text formatting.
#[derive(Debug)]
pub struct VectorParam<'a>(pub &'a [f32]);

impl ToSql for VectorParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let dims = u16::try_from(self.0.len()).map_err(|_| "too many dimensions for pgvector")?;
        out.put_u16(dims);
        out.put_u16(0);
        for x in self.0 {
            out.put_f32(*x);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

/// A SQL string literal holding `text` exactly, whatever
/// `standard_conforming_strings` says (PostgreSQL's own `quote_literal`
/// rule: quotes doubled, and an `E''` literal with doubled backslashes when
/// there is a backslash).
pub fn literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A double-quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The index of one (model, dimensions): named by a hash of the model, so
/// any model text gives a short, safe name.
pub fn index_name(model: &str, dims: usize) -> String {
    let hash = crate::digest::sha256_hex(model.as_bytes());
    format!("entity_vectors_hnsw_{}_{dims}", &hash[..16])
}

impl Pgvector {
    /// Installs pgvector when the server has it and adds the column; `None`
    /// (the exact scan) when the server lacks it or this role may not
    /// install it.
    pub async fn detect(
        c: &mut deadpool_postgres::Object,
        ef_search: usize,
    ) -> DomainResult<Option<Pgvector>> {
        let available = c
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'",
                &[],
            )
            .await
            .map_err(pg_err)?
            .is_some();
        if !available {
            return Ok(None);
        }
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK])
            .await
            .map_err(pg_err)?;
        // Not trusted: only a superuser (or the owner of a pre-made
        // install) gets it. Another role falls back to the exact scan.
        if let Err(e) = tx
            .batch_execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
            .await
        {
            tracing::warn!(
                error = %e.as_db_error().map_or(e.to_string(), |d| d.message().to_string()),
                "pgvector is available but could not be installed in this database; \
                 semantic search scans exactly (install it once as a superuser: \
                 CREATE EXTENSION vector)"
            );
            return Ok(None);
        }
        let row = tx
            .query_one(
                "SELECT n.nspname::text, e.extversion FROM pg_extension e
                 JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
                &[],
            )
            .await
            .map_err(pg_err)?;
        let schema = ident(row.get(0));
        let version: String = row.get(1);
        tx.batch_execute(&format!(
            "ALTER TABLE entity_vectors ADD COLUMN IF NOT EXISTS embedding {schema}.vector"
        ))
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        let pgvector = Pgvector {
            schema,
            iterative: at_least(&version, (0, 8)),
            ef_search: if ef_search == 0 {
                EF_SEARCH_DEFAULT
            } else {
                ef_search
            },
            indexed: Mutex::default(),
        };
        pgvector.backfill(c).await?;
        tracing::info!(version, "semantic search uses pgvector HNSW indexes");
        Ok(Some(pgvector))
    }

    /// Fills `embedding` for rows stored before pgvector was installed, a
    /// batch per statement (walked in key order, so a row it cannot fill,
    /// an empty vector, is not met again), then builds the indexes of the
    /// models it met: one bulk build each, faster than growing the index
    /// row by row.
    async fn backfill<C: GenericClient>(&self, c: &C) -> DomainResult<()> {
        let mut after = (String::new(), String::new(), String::new());
        let mut filled = 0usize;
        let mut shapes = HashSet::new();
        let update = format!(
            "UPDATE entity_vectors t SET embedding = v.embedding
             FROM unnest($1::text[], $2::text[], $3::text[], $4::{}[]) AS v(org, project, id, embedding)
             WHERE t.org_id = v.org AND t.project_id = v.project AND t.entity_id = v.id",
            self.column_type()
        );
        loop {
            let rows = c
                .query(
                    "SELECT org_id, project_id, entity_id, model, vector FROM entity_vectors
                     WHERE embedding IS NULL AND (org_id, project_id, entity_id) > ($1, $2, $3)
                     ORDER BY org_id, project_id, entity_id LIMIT $4",
                    &[&after.0, &after.1, &after.2, &BACKFILL_BATCH],
                )
                .await
                .map_err(pg_err)?;
            let Some(last) = rows.last() else { break };
            after = (last.get(0), last.get(1), last.get(2));
            let mut keys: [Vec<&str>; 3] = Default::default();
            let mut vectors: Vec<Vec<f32>> = Vec::new();
            for row in &rows {
                let v = decode(row.get(4));
                if v.is_empty() || v.len() > MAX_DIMS {
                    continue;
                }
                for (i, key) in keys.iter_mut().enumerate() {
                    key.push(row.get(i));
                }
                shapes.insert((row.get::<_, String>(3), v.len()));
                vectors.push(v);
            }
            let params: Vec<VectorParam> = vectors.iter().map(|v| VectorParam(v)).collect();
            c.execute(&update, &[&keys[0], &keys[1], &keys[2], &params])
                .await
                .map_err(pg_err)?;
            filled += vectors.len();
        }
        for (model, dims) in shapes {
            self.ensure_index(c, &model, dims).await?;
        }
        if filled > 0 {
            tracing::info!(filled, "pgvector column filled from stored vectors");
        }
        Ok(())
    }

    /// The `embedding` value for a stored vector (binary, no text round trip).
    pub fn column_type(&self) -> String {
        format!("{}.vector", self.schema)
    }

    /// Creates the HNSW index of (model, dims) unless this process already
    /// did or it exists. The first batch of a new model is small, so
    /// building it in line costs little; the backfill of a large table
    /// is the one long build (at open, before serving).
    pub async fn ensure_index<C: GenericClient>(
        &self,
        c: &C,
        model: &str,
        dims: usize,
    ) -> DomainResult<()> {
        let key = (model.to_string(), dims);
        if !(1..=MAX_INDEXED_DIMS).contains(&dims)
            || self.indexed.lock().expect("index set").contains(&key)
        {
            return Ok(());
        }
        let schema = &self.schema;
        let sql = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({SETUP_LOCK});
             CREATE INDEX IF NOT EXISTS {name} ON entity_vectors
                 USING hnsw ((embedding::{schema}.vector({dims})) {schema}.vector_ip_ops)
                 WITH ({HNSW_WITH})
                 WHERE {predicate};
             COMMIT;",
            name = index_name(model, dims),
            predicate = predicate(schema, model, dims),
        );
        if let Err(e) = c.batch_execute(&sql).await {
            // Leave the connection usable for the pool.
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(pg_err(e));
        }
        self.indexed.lock().expect("index set").insert(key);
        Ok(())
    }

    /// The search statement of (model, dims); see `search_sql`.
    fn search_sql(&self, model: &str, dims: usize) -> String {
        search_statement(&self.schema, model, dims)
    }

    /// The nearest `limit` vectors by the index, re-ranked exactly. A
    /// filtered walk may end with fewer rows than asked (pgvector stops
    /// after `hnsw.max_scan_tuples`); then the caller scans exactly.
    pub async fn search(
        &self,
        c: &mut deadpool_postgres::Object,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Option<Vec<VectorHit>>> {
        let ef = (limit * 2).max(self.ef_search).min(EF_SEARCH_MAX);
        let tx = c.transaction().await.map_err(pg_err)?;
        // SET LOCAL: the settings end with the transaction, so a pooled
        // connection carries nothing to its next user.
        let mut settings = format!("SET LOCAL hnsw.ef_search = {ef};");
        if self.iterative {
            // relaxed_order: the walk goes on past rows the tenant filter
            // drops; the order it returns is fixed by the re-rank below.
            settings.push_str("SET LOCAL hnsw.iterative_scan = relaxed_order;");
        }
        tx.batch_execute(&settings).await.map_err(pg_err)?;
        let wanted = i64::try_from(limit).unwrap_or(i64::MAX);
        let statement = tx
            .prepare_cached(&self.search_sql(model, query.len()))
            .await
            .map_err(pg_err)?;
        let rows = tx
            .query(
                &statement,
                &[
                    &scope.org,
                    &scope.project,
                    &entity_type,
                    &VectorParam(query),
                    &wanted,
                ],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        if rows.len() < limit {
            return Ok(None);
        }
        let mut top = TopK::new(limit);
        for row in &rows {
            if let Some(score) = dot(query, row.get::<_, &[u8]>(1)) {
                top.push(row.get(0), score);
            }
        }
        Ok(Some(top.into_sorted()))
    }
}

/// The rows one index covers; the search repeats it word for word, so the
/// planner can prove the partial index applies. `schema` is quoted.
fn predicate(schema: &str, model: &str, dims: usize) -> String {
    format!(
        "model = {} AND {schema}.vector_dims(embedding) = {dims}",
        literal(model)
    )
}

/// The store's search statement of (model, dims) with pgvector in
/// `schema`: $1 org, $2 project, $3 type or NULL, $4 the query vector
/// (`VectorParam`), $5 the limit. Public for tests and the bench, which
/// EXPLAIN it.
pub fn search_sql(schema: &str, model: &str, dims: usize) -> String {
    search_statement(&ident(schema), model, dims)
}

fn search_statement(schema: &str, model: &str, dims: usize) -> String {
    format!(
        "SELECT entity_id, vector FROM entity_vectors
         WHERE {predicate}
           AND org_id = $1 AND project_id = $2 AND ($3::text IS NULL OR type = $3)
         ORDER BY (embedding::{schema}.vector({dims}))
                  OPERATOR({schema}.<#>) $4::{schema}.vector({dims})
         LIMIT $5",
        predicate = predicate(schema, model, dims),
    )
}

/// The f32s of a stored vector; empty when the bytes are not whole f32s.
fn decode(bytes: &[u8]) -> Vec<f32> {
    if !bytes.len().is_multiple_of(4) {
        return Vec::new();
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Whether a version string like "0.8.1" is at least `(major, minor)`.
fn at_least(version: &str, want: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_hold_any_text() {
        assert_eq!(literal("nomic-embed-text"), "'nomic-embed-text'");
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal(r"a\'; DROP"), r"E'a\\''; DROP'");
    }

    #[test]
    fn index_names_are_short_and_plain() {
        let name = index_name("model'; DROP TABLE x; --", 384);
        assert!(name.len() < 63, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(name, index_name("other", 384));
        assert_ne!(name, index_name("model'; DROP TABLE x; --", 768));
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(at_least("0.8.0", (0, 8)));
        assert!(at_least("0.10.1", (0, 8)));
        assert!(!at_least("0.7.4", (0, 8)));
    }
}
