//! The Meilisearch adapter (meilisearch-sdk): one index for every tenant,
//! each document tagged with its tenant (`"<org>/<project>"`), and every
//! search and listing sent with a tenant filter built here, the values
//! quoted by [`quote`]. Query text goes only into `q`, reduced to words by
//! `search::query_terms`, so neither query text nor a `type` parameter can
//! reach another tenant's documents or be read as Meilisearch syntax.
//!
//! Every call has a timeout; transient failures (no connection, a timeout,
//! a 5xx) are tried again a few times with backoff and then reported as
//! [`MeiliError::Unavailable`]; what Meilisearch refuses (a 4xx, a failed
//! task) is [`MeiliError::Refused`] with Meilisearch's message. Writes wait
//! for their task, so a success means the change is searchable.

use crate::domain::{Entity, Scope};
use meilisearch_sdk::client::Client;
use meilisearch_sdk::documents::{DocumentDeletionQuery, DocumentsQuery};
use meilisearch_sdk::errors::{Error as SdkError, ErrorType};
use meilisearch_sdk::search::Selectors;
use meilisearch_sdk::settings::Settings;
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The one index every tenant's documents live in.
pub const INDEX: &str = "strata_entities";
/// The documents' primary key (a digest: entity ids may hold characters
/// Meilisearch refuses in a document id).
const PRIMARY_KEY: &str = "key";
/// One HTTP call, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for its task to finish.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
const TASK_POLL: Duration = Duration::from_millis(20);
/// Tries of one call before it is reported unavailable.
const ATTEMPTS: u32 = 3;
/// A search is one try within this: the caller's fallback is its retry,
/// and a request must not spend its own timeout waiting on Meilisearch.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// After a search found Meilisearch unavailable, searches fail at once for
/// this long (so an outage that hangs costs one wait, not one per search).
const SEARCH_PAUSE: Duration = Duration::from_secs(5);
/// Documents per listing page (reconciliation).
pub const LIST_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MeiliError {
    /// Worth trying again later: no answer, a timeout, a server error.
    #[error("Meilisearch is unavailable: {0}")]
    Unavailable(String),
    /// Meilisearch answered and refused (a bad request, a failed task).
    #[error("Meilisearch refused: {0}")]
    Refused(String),
}

impl MeiliError {
    fn of(e: SdkError) -> Self {
        match e {
            // A wrong key is no document's fault: retried (and the feed
            // waits) until the configuration is fixed.
            SdkError::Meilisearch(m)
                if matches!(m.error_type, ErrorType::Internal | ErrorType::Auth) =>
            {
                MeiliError::Unavailable(m.error_message)
            }
            SdkError::Meilisearch(m) => MeiliError::Refused(m.error_message),
            SdkError::MeilisearchCommunication(c) if c.status_code < 500 => {
                MeiliError::Refused(c.to_string())
            }
            SdkError::Timeout => MeiliError::Unavailable("a task did not finish in time".into()),
            other => MeiliError::Unavailable(other.to_string()),
        }
    }

    fn is_transient(&self) -> bool {
        matches!(self, MeiliError::Unavailable(_))
    }
}

/// One entity as Meilisearch holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeiliDoc {
    pub key: String,
    pub tenant: String,
    pub org: String,
    pub project: String,
    pub id: String,
    #[serde(rename = "type")]
    pub entity_type: String,
    pub version: i64,
    /// The project's creation time: a project deleted and made again under
    /// its id has documents of the one before only until a reconciliation
    /// sees this differ.
    pub made: String,
    /// `search::text_of`: the same text full-text search indexes.
    pub text: String,
}

impl MeiliDoc {
    /// The document of an entity of the project made at `made`.
    pub fn of(scope: &Scope, made: &str, entity: &Entity) -> Self {
        MeiliDoc {
            key: doc_key(scope, &entity.id),
            tenant: tenant(scope),
            org: scope.org.clone(),
            project: scope.project.clone(),
            id: entity.id.clone(),
            entity_type: entity.entity_type.clone(),
            version: entity.version,
            made: made.to_owned(),
            text: super::text_of(&entity.properties),
        }
    }
}

/// A document's id in the index: hex SHA-256 of org, project and entity id
/// (NUL-separated: no id can hold NUL, so no two triples meet).
pub fn doc_key(scope: &Scope, id: &str) -> String {
    crate::digest::sha256_hex(format!("{}\0{}\0{}", scope.org, scope.project, id).as_bytes())
}

pub fn tenant(scope: &Scope) -> String {
    format!("{}/{}", scope.org, scope.project)
}

/// A Meilisearch filter string value: double-quoted, with `\` and `"`
/// escaped, so the value can never end the string early.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The filter of every search and listing: the tenant, and the type if
/// asked (applied inside the engine, before the limit).
pub fn filter(scope: &Scope, entity_type: Option<&str>) -> String {
    let mut f = format!("tenant = {}", quote(&tenant(scope)));
    if let Some(t) = entity_type {
        f.push_str(" AND type = ");
        f.push_str(&quote(t));
    }
    f
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct TenantOnly {
    tenant: String,
}

/// What a reconciliation compares of an indexed document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Indexed {
    pub id: String,
    pub version: i64,
    /// Empty for a document written before documents carried it.
    #[serde(default)]
    pub made: String,
}

/// The index, its settings made sure of on first use.
pub struct MeiliIndex {
    client: Client,
    uid: String,
    ready: OnceCell<()>,
    /// Searches fail at once until then (see `SEARCH_PAUSE`).
    searches_paused_until: Mutex<Option<Instant>>,
}

impl MeiliIndex {
    /// A handle on `url` (no call is made until the first use, so a
    /// Meilisearch that is down does not stop the daemon's start).
    pub fn new(url: &str, key: Option<&str>) -> anyhow::Result<Self> {
        Self::with_index(url, key, INDEX)
    }

    pub fn with_index(url: &str, key: Option<&str>, uid: &str) -> anyhow::Result<Self> {
        let client = Client::new(url.trim_end_matches('/'), key)?;
        Ok(MeiliIndex {
            client,
            uid: uid.to_owned(),
            ready: OnceCell::new(),
            searches_paused_until: Mutex::new(None),
        })
    }

    /// Whether Meilisearch answers its health check: one try within 3 s,
    /// for a readiness probe that must answer quickly.
    pub async fn health(&self) -> Result<(), MeiliError> {
        self.call_with(1, SEARCH_TIMEOUT, || self.client.health())
            .await
            .map(|_| ())
    }

    /// Creates the index if needed and applies the settings (idempotent:
    /// the same settings again change nothing). Done once per handle.
    pub async fn ensure(&self) -> Result<(), MeiliError> {
        self.ready
            .get_or_try_init(|| async {
                match self.call(|| self.client.get_index(&self.uid)).await {
                    Ok(_) => {}
                    Err(MeiliError::Refused(_)) => {
                        let task = self
                            .call(|| self.client.create_index(&self.uid, Some(PRIMARY_KEY)))
                            .await?;
                        if let Err(e) = self.wait(task).await {
                            // Another daemon may have created it meanwhile.
                            if !e.to_string().contains("already exists") {
                                return Err(e);
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
                // Typo tolerance is Meilisearch's default and left on.
                let settings = Settings::new()
                    .with_searchable_attributes(["text"])
                    .with_filterable_attributes(["tenant", "type"])
                    .with_displayed_attributes(["*"]);
                let index = self.client.index(&self.uid);
                let task = self.call(|| index.set_settings(&settings)).await?;
                self.wait(task).await
            })
            .await
            .map(|_| ())
    }

    /// Adds or replaces documents (by key), in one task.
    pub async fn upsert(&self, docs: &[MeiliDoc]) -> Result<(), MeiliError> {
        if docs.is_empty() {
            return Ok(());
        }
        self.ensure().await?;
        let index = self.client.index(&self.uid);
        let task = self
            .call(|| index.add_or_replace(docs, Some(PRIMARY_KEY)))
            .await?;
        self.wait(task).await
    }

    /// Deletes documents by key (absent ones are no error), in one task.
    pub async fn delete(&self, keys: &[String]) -> Result<(), MeiliError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.ensure().await?;
        let index = self.client.index(&self.uid);
        let task = self.call(|| index.delete_documents(keys)).await?;
        self.wait(task).await
    }

    /// Deletes every document of a tenant (a deleted project).
    pub async fn delete_tenant(&self, scope: &Scope) -> Result<(), MeiliError> {
        self.ensure().await?;
        let index = self.client.index(&self.uid);
        let f = filter(scope, None);
        let task = self
            .call(|| async {
                let mut q = DocumentDeletionQuery::new(&index);
                q.with_filter(&f);
                index.delete_documents_with(&q).await
            })
            .await?;
        self.wait(task).await
    }

    /// The tenant's best matches for `q` (reduced to words), ids with
    /// Meilisearch's ranking score, best first. No index yet (nothing was
    /// ever indexed) is `Refused`, like any refusal: the caller falls back.
    pub async fn search(
        &self,
        scope: &Scope,
        q: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, f64)>, MeiliError> {
        let words = super::query_terms(q).join(" ");
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let paused = *self.searches_paused_until.lock().expect("pause lock");
        if paused.is_some_and(|until| Instant::now() < until) {
            return Err(MeiliError::Unavailable(
                "unavailable at a recent search; not asked again yet".into(),
            ));
        }
        let index = self.client.index(&self.uid);
        let f = filter(scope, entity_type);
        let fields = ["id"];
        let results = self
            .call_with(1, SEARCH_TIMEOUT, || async {
                index
                    .search()
                    .with_query(&words)
                    .with_filter(&f)
                    .with_limit(limit)
                    .with_show_ranking_score(true)
                    .with_attributes_to_retrieve(Selectors::Some(&fields))
                    .execute::<IdOnly>()
                    .await
            })
            .await
            .inspect_err(|e| {
                if e.is_transient() {
                    *self.searches_paused_until.lock().expect("pause lock") =
                        Some(Instant::now() + SEARCH_PAUSE);
                }
            })?;
        Ok(results
            .hits
            .into_iter()
            .map(|h| (h.result.id, h.ranking_score.unwrap_or(0.0)))
            .collect())
    }

    /// One page of a tenant's documents (entity id, version, project
    /// creation), and the tenant's document count.
    pub async fn list(
        &self,
        scope: &Scope,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Indexed>, usize), MeiliError> {
        self.ensure().await?;
        let index = self.client.index(&self.uid);
        let f = filter(scope, None);
        let page = self
            .call(|| async {
                let mut q = DocumentsQuery::new(&index);
                q.with_filter(&f)
                    .with_fields(["id", "version", "made"])
                    .with_offset(offset)
                    .with_limit(limit);
                index.get_documents_with::<Indexed>(&q).await
            })
            .await?;
        Ok((page.results, page.total as usize))
    }

    /// Every tenant that has documents (a scan of the index's tenant
    /// fields, page by page: for the daily reconciliation only).
    pub async fn tenants(&self) -> Result<BTreeSet<String>, MeiliError> {
        self.ensure().await?;
        let index = self.client.index(&self.uid);
        let mut tenants = BTreeSet::new();
        let mut offset = 0;
        loop {
            let page = self
                .call(|| async {
                    let mut q = DocumentsQuery::new(&index);
                    q.with_fields(["tenant"])
                        .with_offset(offset)
                        .with_limit(LIST_PAGE);
                    index.get_documents_with::<TenantOnly>(&q).await
                })
                .await?;
            let n = page.results.len();
            tenants.extend(page.results.into_iter().map(|d| d.tenant));
            offset += n;
            if n == 0 || offset >= page.total as usize {
                return Ok(tenants);
            }
        }
    }

    /// Runs one call with a timeout, trying transient failures again.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, MeiliError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError>>,
    {
        self.call_with(ATTEMPTS, CALL_TIMEOUT, f).await
    }

    async fn call_with<T, F, Fut>(
        &self,
        attempts: u32,
        timeout: Duration,
        f: F,
    ) -> Result<T, MeiliError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match tokio::time::timeout(timeout, f()).await {
                Ok(r) => r.map_err(MeiliError::of),
                Err(_) => Err(MeiliError::Unavailable("no answer in time".into())),
            };
            match result {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::debug!(error = %e, attempt, "Meilisearch call failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Waits for a task; a failed task is `Refused` with Meilisearch's message.
    async fn wait(&self, task: TaskInfo) -> Result<(), MeiliError> {
        let done = tokio::time::timeout(
            TASK_TIMEOUT + CALL_TIMEOUT,
            self.client
                .wait_for_task(&task, Some(TASK_POLL), Some(TASK_TIMEOUT)),
        )
        .await
        .map_err(|_| MeiliError::Unavailable("a task did not finish in time".into()))?
        .map_err(MeiliError::of)?;
        match done {
            Task::Failed { content } => Err(MeiliError::Refused(content.error.error_message)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_cannot_end_their_string() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        let s = Scope::new("o", "p");
        assert_eq!(
            filter(&s, Some(r#"x" OR tenant = "q/p"#)),
            r#"tenant = "o/p" AND type = "x\" OR tenant = \"q/p""#
        );
    }

    #[test]
    fn keys_are_meili_safe_and_tenant_specific() {
        let k = doc_key(&Scope::new("o", "p"), "a/b c");
        assert_eq!(k.len(), 64);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(k, doc_key(&Scope::new("o", "q"), "a/b c"));
    }
}
