//! Entity embeddings on PostgreSQL: one row per entity, searched by an
//! exact scan of the project's vectors (`search::vectors`). pgvector's HNSW
//! index, where the extension exists, is the planned faster path.

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
        let c = self.client().await?;
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
