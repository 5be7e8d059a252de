//! Full-text search over the generated `search` column (tsvector, English
//! stemming, GIN index), ranked with `ts_rank`.

use super::rows::{self, query, ENTITY_COLS};
use super::PgStore;
use crate::domain::*;
use crate::store::prelude::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;

/// Full-text search: `to_tsquery` over sanitised prefix terms, `ts_rank`.
pub async fn search<C: GenericClient>(
    c: &C,
    scope: &Scope,
    terms: &[String],
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    // Terms are alphanumeric words (see search::query_terms): no tsquery syntax.
    let tsquery = crate::search::query::tsquery_prefix(terms);
    let sql = format!(
        "SELECT {ENTITY_COLS}, ts_rank(search, q) AS rank
         FROM entities, to_tsquery('english', $3) q
         WHERE org_id = $1 AND project_id = $2 AND deleted_at IS NULL AND search @@ q
           AND ($4::text IS NULL OR type = $4)
         ORDER BY rank DESC, id LIMIT $5"
    );
    let found = query(
        c,
        &sql,
        &[
            &scope.org,
            &scope.project,
            &tsquery,
            &entity_type,
            &(limit as i64),
        ],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| {
            let entity = rows::entity(r);
            SearchHit {
                highlights: crate::search::highlights(&entity.properties, terms),
                entity,
                score: f64::from(r.get::<_, f32>(10)),
            }
        })
        .collect())
}

#[async_trait]
impl SearchStore for PgStore {
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>> {
        let terms = crate::search::query_terms(query);
        if terms.is_empty() {
            return Err(DomainError::BadRequest(
                "q must contain at least one word".into(),
            ));
        }
        let c = self.client().await?;
        super::tenancy::get_project(&c, &scope.org, &scope.project).await?;
        search(&c, scope, &terms, entity_type, limit).await
    }
}
