//! Entity embeddings on PostgreSQL: one row per entity. Where pgvector is
//! installed (chosen once, at open: `pgvector.rs`), each row also carries a
//! `vector` column and a search walks the HNSW index of its model, then
//! re-ranks the candidates exactly; elsewhere, and when a filtered walk
//! returns fewer rows than asked, the project's vectors are scanned exactly
//! (`search::vectors`).

use super::pgvector::{VectorParam, MAX_DIMS};
use super::rows::{self, execute};
use super::PgStore;
use crate::domain::*;
use crate::search::vectors::{dot, encode, TopK};
use crate::store::prelude::*;
use async_trait::async_trait;

#[async_trait]
impl VectorStore for PgStore {
    async fn put_vectors(
        &self,
        scope: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()> {
        // One statement for the batch: the consumer stores up to 64 at once.
        let ids: Vec<&str> = vectors.iter().map(|v| v.id.as_str()).collect();
        let types: Vec<&str> = vectors.iter().map(|v| v.entity_type.as_str()).collect();
        let versions: Vec<i64> = vectors.iter().map(|v| v.version).collect();
        let blobs: Vec<Vec<u8>> = vectors.iter().map(|v| encode(&v.vector)).collect();
        let c = self.client().await?;
        if let Some(pgv) = &self.vectors {
            return put_indexed(
                &c,
                pgv,
                scope,
                model,
                &vectors,
                (ids, types, versions, blobs),
            )
            .await;
        }
        execute(
            &c,
            "INSERT INTO entity_vectors
                 (org_id, project_id, entity_id, type, version, model, vector)
             SELECT $1, $2, v.id, v.type, v.version, $3, v.vector
             FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bytea[])
                  AS v(id, type, version, vector)
             ON CONFLICT (org_id, project_id, entity_id) DO UPDATE
             SET type = EXCLUDED.type, version = EXCLUDED.version,
                 model = EXCLUDED.model, vector = EXCLUDED.vector
             WHERE EXCLUDED.version >= entity_vectors.version
                OR EXCLUDED.model <> entity_vectors.model",
            &[
                &scope.org,
                &scope.project,
                &model,
                &ids,
                &types,
                &versions,
                &blobs,
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_vectors(&self, scope: &Scope, ids: &[String]) -> DomainResult<()> {
        let c = self.client().await?;
        execute(
            &c,
            "DELETE FROM entity_vectors
             WHERE org_id = $1 AND project_id = $2 AND entity_id = ANY($3)",
            &[&scope.org, &scope.project, &ids],
        )
        .await?;
        Ok(())
    }

    async fn search_vectors(
        &self,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>> {
        let mut c = self.client().await?;
        // A length pgvector cannot hold has only bytes: the exact scan.
        if let Some(pgv) = self
            .vectors
            .as_ref()
            .filter(|_| (1..=MAX_DIMS).contains(&query.len()))
        {
            if let Some(hits) = pgv
                .search(&mut c, scope, model, query, entity_type, limit)
                .await?
            {
                return Ok(hits);
            }
        }
        let found = rows::query(
            &c,
            "SELECT entity_id, vector FROM entity_vectors
             WHERE org_id = $1 AND project_id = $2 AND model = $3
               AND ($4::text IS NULL OR type = $4)",
            &[&scope.org, &scope.project, &model, &entity_type],
        )
        .await?;
        let mut top = TopK::new(limit);
        for row in &found {
            if let Some(score) = dot(query, row.get::<_, &[u8]>(1)) {
                top.push(row.get(0), score);
            }
        }
        Ok(top.into_sorted())
    }
}

/// The bytes column of a batch, as `put_vectors` gathers it.
type Columns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<i64>, Vec<Vec<u8>>);

/// `put_vectors` with pgvector: the same upsert, also writing `embedding`,
/// after making sure the model's index exists (so its first rows are in it).
async fn put_indexed(
    c: &deadpool_postgres::Object,
    pgv: &super::pgvector::Pgvector,
    scope: &Scope,
    model: &str,
    vectors: &[EntityVector],
    (ids, types, versions, blobs): Columns<'_>,
) -> DomainResult<()> {
    let mut dims: Vec<usize> = vectors.iter().map(|v| v.vector.len()).collect();
    dims.sort_unstable();
    dims.dedup();
    for d in dims {
        pgv.ensure_index(c, model, d).await?;
    }
    // A vector pgvector cannot hold (empty, too long) is NULL there: only
    // the exact scan sees it.
    let embeddings: Vec<Option<VectorParam>> = vectors
        .iter()
        .map(|v| {
            (1..=MAX_DIMS)
                .contains(&v.vector.len())
                .then_some(VectorParam(&v.vector))
        })
        .collect();
    execute(
        c,
        &format!(
            "INSERT INTO entity_vectors
                 (org_id, project_id, entity_id, type, version, model, vector, embedding)
             SELECT $1, $2, v.id, v.type, v.version, $3, v.vector, v.embedding
             FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bytea[], $8::{}[])
                  AS v(id, type, version, vector, embedding)
             ON CONFLICT (org_id, project_id, entity_id) DO UPDATE
             SET type = EXCLUDED.type, version = EXCLUDED.version,
                 model = EXCLUDED.model, vector = EXCLUDED.vector,
                 embedding = EXCLUDED.embedding
             WHERE EXCLUDED.version >= entity_vectors.version
                OR EXCLUDED.model <> entity_vectors.model",
            pgv.column_type()
        ),
        &[
            &scope.org,
            &scope.project,
            &model,
            &ids,
            &types,
            &versions,
            &blobs,
            &embeddings,
        ],
    )
    .await?;
    Ok(())
}
