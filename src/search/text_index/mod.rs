//! The daemon's own full-text index: a tantivy index in the data directory,
//! derived from the store and kept by following the change feed. It ranks
//! with BM25 and block-max WAND, so a query on common words skips most of
//! their postings instead of scoring every match (the database indexes
//! rank every match before the limit).
//!
//! Each daemon keeps its own copy (it is not a leased consumer and holds
//! no cursor in the store, so it never holds back the outbox's pruning):
//! its feed position is stored with each commit. A search first applies
//! whatever the feed holds beyond that position, so it sees every write
//! acknowledged before it (read-your-writes, like the database indexes).
//! While the index is being built, or when it cannot keep up, searches
//! fall back to the database's index.

mod analysis;
mod index;
mod stats;
mod typos;

use crate::domain::{Entity, EntityFilter, PageRequest, Scope};
use crate::feed::{all_projects_made, current_states, entities_by_scope, made_at, FeedChange};
use crate::lifecycle::Lifecycle;
use crate::store::DynStore;
use analysis::Analyzer;
use index::TextIndexFiles;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tantivy::IndexWriter;

/// Changes read from the feed at once.
const BATCH: usize = 500;
/// Most batches one catch-up applies before it commits.
const BATCHES_PER_COMMIT: usize = 20;
/// How often the daemon applies the feed when no search asks.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often it removes the documents of deleted projects.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The index, shared by the routes and its follower task; cheap to clone.
#[derive(Clone)]
pub struct TextIndex {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    files: TextIndexFiles,
    writer: std::sync::Mutex<IndexWriter>,
    /// The feed position the index holds; held while applying the feed.
    position: tokio::sync::Mutex<i64>,
    /// Built and following: searches may use it.
    ready: AtomicBool,
    /// The last catch-up reached the head of the feed.
    caught_up: AtomicBool,
}

/// The index as `/metrics` shows it.
#[derive(Debug, Clone, Copy)]
pub struct TextIndexReport {
    pub documents: u64,
    /// Built, and the last catch-up reached the head of the feed.
    pub current: bool,
}

/// What one catch-up did.
#[derive(Debug, PartialEq, Eq)]
enum CaughtUp {
    Yes,
    /// More changes than one commit takes: searches use the database until
    /// the follower is through them.
    Behind,
    /// The feed was pruned past the index's position before the follower
    /// read what it missed: only a rebuild from the data brings it back.
    Lost,
}

impl TextIndex {
    /// Opens (or creates) the index in `dir`. Searches use it once `start`
    /// has brought it up to date.
    pub fn open(dir: &Path, store: DynStore) -> anyhow::Result<Self> {
        let files = TextIndexFiles::open(dir)?;
        let writer = files.writer()?;
        let position = files.committed_position()?;
        Ok(TextIndex {
            inner: Arc::new(Inner {
                store,
                files,
                writer: std::sync::Mutex::new(writer),
                position: tokio::sync::Mutex::new(position),
                ready: AtomicBool::new(false),
                caught_up: AtomicBool::new(false),
            }),
        })
    }

    /// Brings the index up to date (rebuilding it from the data when the
    /// changes it needs are gone), then follows the feed until shutdown.
    pub fn start(&self, lifecycle: &Lifecycle) {
        let this = self.clone();
        let lifecycle2 = lifecycle.clone();
        lifecycle.spawn(async move { this.follow(&lifecycle2).await });
    }

    /// Ranked ids of the project's entities with every word of `q`, as of
    /// every write acknowledged before the call; `None` when the index
    /// cannot answer now (being built, behind, or failing). `made`: the
    /// project's creation time (only its documents, not those of a project
    /// of its id deleted before, can match).
    pub async fn search(
        &self,
        (scope, made): (&Scope, &str),
        q: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> Option<Vec<(String, f64)>> {
        if !self.inner.ready.load(Ordering::Acquire) {
            return None;
        }
        match self.catch_up().await {
            Ok(CaughtUp::Yes) => {}
            Ok(CaughtUp::Behind | CaughtUp::Lost) => return None,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "text index cannot apply the feed; the database answers");
                return None;
            }
        }
        let (inner, scope, made) = (self.inner.clone(), scope.clone(), made.to_owned());
        let words = super::query_terms(q);
        let entity_type = entity_type.map(str::to_owned);
        let found = tokio::task::spawn_blocking(move || {
            let tenant = (&scope, made.as_str());
            inner
                .files
                .search(tenant, &words, entity_type.as_deref(), limit)
        })
        .await;
        match found {
            Ok(Ok(hits)) => Some(hits),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "text index search failed; the database answers");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "text index search panicked; the database answers");
                None
            }
        }
    }

    /// Documents the index holds, and whether searches use it.
    pub fn state(&self) -> (u64, bool) {
        (
            self.inner.files.len(),
            self.inner.ready.load(Ordering::Acquire),
        )
    }

    pub fn report(&self) -> TextIndexReport {
        let (documents, ready) = self.state();
        TextIndexReport {
            documents,
            current: ready && self.inner.caught_up.load(Ordering::Acquire),
        }
    }

    async fn follow(&self, lifecycle: &Lifecycle) {
        let mut wait = Duration::from_millis(100);
        while !lifecycle.is_cancelled() {
            match self.prepare().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "text index not ready; the database answers searches");
                }
            }
            if !pause(lifecycle, wait).await {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        self.inner.ready.store(true, Ordering::Release);
        tracing::info!(documents = self.inner.files.len(), "text index ready");
        let mut swept = tokio::time::Instant::now();
        while pause(lifecycle, FOLLOW_EVERY).await {
            if swept.elapsed() >= SWEEP_EVERY {
                swept = tokio::time::Instant::now();
                if let Err(e) = self.sweep().await {
                    tracing::warn!(error = %format!("{e:#}"), "text index cannot remove deleted projects; retrying later");
                }
            }
            loop {
                match self.catch_up().await {
                    Ok(CaughtUp::Yes) => break,
                    Ok(CaughtUp::Behind) => continue,
                    Ok(CaughtUp::Lost) => {
                        // Searches use the database while it rebuilds.
                        self.inner.ready.store(false, Ordering::Release);
                        if let Err(e) = self.prepare().await {
                            tracing::warn!(error = %format!("{e:#}"), "text index cannot rebuild; retrying");
                            break;
                        }
                        self.inner.ready.store(true, Ordering::Release);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "text index cannot apply the feed; retrying");
                        break;
                    }
                }
            }
        }
    }

    /// Rebuilds the index when the feed no longer holds what it misses (or
    /// it holds a position the store never reached: another database).
    async fn prepare(&self) -> anyhow::Result<()> {
        let mut position = self.inner.position.lock().await;
        let bounds = self.inner.store.feed_bounds().await?;
        if *position >= bounds.horizon && *position <= bounds.head {
            return Ok(());
        }
        tracing::info!(
            position = *position,
            horizon = bounds.horizon,
            head = bounds.head,
            "text index rebuilding from the data"
        );
        // The head is read before the data: later changes come from the feed.
        self.blocking(|inner, writer| {
            writer.delete_all_documents()?;
            Ok(inner.files.commit(writer, 0)?)
        })
        .await?;
        *position = 0;
        for scope in crate::feed::all_projects(&self.inner.store).await? {
            self.index_project(&scope).await?;
        }
        let head = bounds.head;
        self.blocking(move |inner, writer| Ok(inner.files.commit(writer, head)?))
            .await?;
        *position = head;
        Ok(())
    }

    /// Removes the documents of projects that no longer exist: deleting a
    /// project deletes its changes, so no change ever removes them, and a
    /// tenant making and deleting projects would grow every daemon's index
    /// without bound. The follower runs it every `SWEEP_EVERY`; the number
    /// of projects removed.
    pub async fn sweep(&self) -> anyhow::Result<usize> {
        // Terms read before the projects: a project made in between is not
        // among them. A term names one project's creation, which a listing
        // without it has seen deleted for good.
        let held = self
            .blocking(|inner, _| Ok(inner.files.project_terms()?))
            .await?;
        if held.is_empty() {
            return Ok(0);
        }
        let live: std::collections::HashSet<String> = all_projects_made(&self.inner.store)
            .await?
            .iter()
            .map(|(scope, made)| index::project_term(scope, made))
            .collect();
        let gone: Vec<String> = held.into_iter().filter(|t| !live.contains(t)).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        // The commit keeps the position the index holds.
        let position = self.inner.position.lock().await;
        let at = *position;
        self.blocking(move |inner, writer| {
            for term in &gone {
                inner.files.remove_project(writer, term);
            }
            inner.files.commit(writer, at)?;
            Ok(gone.len())
        })
        .await
    }

    async fn index_project(&self, scope: &Scope) -> anyhow::Result<()> {
        let Some(made) = made_at(&self.inner.store, scope).await? else {
            return Ok(());
        };
        let mut page = PageRequest {
            cursor: None,
            limit: 1000,
        };
        loop {
            let entities = self
                .inner
                .store
                .list_entities(scope, &EntityFilter::default(), &page)
                .await?;
            let live: Vec<(String, Option<Entity>)> = entities
                .items
                .into_iter()
                .filter(|e| e.deleted_at.is_none())
                .map(|e| (e.id.clone(), Some(e)))
                .collect();
            self.put(vec![(scope.clone(), made.clone(), live)]).await?;
            match entities.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Applies the feed beyond the index's position (at most
    /// `BATCHES_PER_COMMIT` batches) and commits.
    async fn catch_up(&self) -> anyhow::Result<CaughtUp> {
        let mut position = self.inner.position.lock().await;
        let mut reached = *position;
        let mut caught_up = CaughtUp::Behind;
        for _ in 0..BATCHES_PER_COMMIT {
            let batch = self.inner.store.read_feed(reached, BATCH).await?;
            let Some(last) = batch.last().map(|c| c.change.seq) else {
                caught_up = CaughtUp::Yes;
                break;
            };
            self.put(current(&self.inner.store, &batch).await?).await?;
            reached = last;
            if batch.len() < BATCH {
                caught_up = CaughtUp::Yes;
                break;
            }
        }
        // Pruning only moves the horizon on: if it is still at or before
        // where this started, nothing was pruned before it was read. (Only
        // a read that moves the position on needs the check: one that does
        // not leaves the question to the next.)
        if reached != *position && self.inner.store.feed_bounds().await?.horizon > *position {
            tracing::warn!(
                position = *position,
                "the change feed was pruned past the text index: rebuilding"
            );
            return Ok(CaughtUp::Lost);
        }
        if reached != *position {
            // On failure the position stays: the same changes come again,
            // and applying a change twice leaves the same document.
            self.blocking(move |inner, writer| Ok(inner.files.commit(writer, reached)?))
                .await?;
            *position = reached;
        }
        let current = caught_up == CaughtUp::Yes;
        self.inner.caught_up.store(current, Ordering::Release);
        Ok(caught_up)
    }

    /// Replaces the documents of these entities (`None`: removed), by
    /// project with its creation time.
    async fn put(&self, states: Vec<ProjectStates>) -> anyhow::Result<()> {
        self.blocking(move |inner, writer| {
            let mut analyzer = Analyzer::default();
            for (scope, made, entities) in &states {
                for (id, entity) in entities {
                    let tenant = (scope, made.as_str());
                    inner
                        .files
                        .put(writer, &mut analyzer, tenant, id, entity.as_ref())?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Runs index work off the async threads, with the writer.
    async fn blocking<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut IndexWriter) -> anyhow::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = inner
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&inner, &mut writer)
        })
        .await?
    }
}

/// A project, its creation time, and entities of it as they are now
/// (`None`: gone).
type ProjectStates = (Scope, String, Vec<(String, Option<Entity>)>);

/// The entities a batch changed, as they are now, by project. A project
/// gone since has its entities removed.
async fn current(store: &DynStore, batch: &[FeedChange]) -> anyhow::Result<Vec<ProjectStates>> {
    let mut out = Vec::new();
    for (scope, ids) in entities_by_scope(batch) {
        let Some(made) = made_at(store, scope).await? else {
            let gone = ids.keys().map(|id| (id.to_string(), None)).collect();
            out.push((scope.clone(), String::new(), gone));
            continue;
        };
        let states = current_states(store, scope, ids).await?;
        out.push((scope.clone(), made, states));
    }
    Ok(out)
}

/// Waits `d`; false when the daemon stops meanwhile.
async fn pause(lifecycle: &Lifecycle, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !lifecycle.is_cancelled(),
        _ = lifecycle.cancelled() => false,
    }
}
