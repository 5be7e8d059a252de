//! The change feed's consumers: every change reaches each consumer in feed
//! order from a durable cursor, failures are retried, the outbox is pruned
//! behind the slowest consumer, a consumer new to a pruned feed rebuilds,
//! and one daemon at a time leads each consumer.

use crate::support::{self, eventually};
use async_trait::async_trait;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata::domain::*;
use strata::feed::{Consumer, Feed, FeedChange, FeedSettings};
use strata::lifecycle::Lifecycle;
use strata::store::DynStore;

/// Records what it is given; fails its first `failures` batches.
struct Recorder {
    name: &'static str,
    seen: Mutex<Vec<FeedChange>>,
    failures: AtomicUsize,
    rebuilds: AtomicUsize,
}

impl Recorder {
    fn new(name: &'static str, failures: usize) -> Arc<Self> {
        Arc::new(Recorder {
            name,
            seen: Mutex::default(),
            failures: AtomicUsize::new(failures),
            rebuilds: AtomicUsize::new(0),
        })
    }

    fn seqs(&self) -> Vec<i64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.change.seq)
            .collect()
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn apply(&self, changes: &[FeedChange]) -> anyhow::Result<()> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            anyhow::bail!("the service is down (simulated)");
        }
        self.seen.lock().unwrap().extend_from_slice(changes);
        Ok(())
    }

    async fn rebuild(&self) -> anyhow::Result<()> {
        self.rebuilds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn settings(batch: usize, retention: Duration) -> FeedSettings {
    FeedSettings {
        batch,
        poll: Duration::from_millis(20),
        retention,
        follow: Duration::from_millis(50),
    }
}

async fn project(store: &DynStore) -> Scope {
    let caller = Caller::new("tester");
    store.create_org(&caller, "acme", "Acme").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "App")
        .await
        .unwrap();
    Scope::new("acme", "app")
}

/// Creates `n` entities `{prefix}{i}` one write each, then patches and
/// deletes some: one change per write.
async fn write_changes(store: &DynStore, scope: &Scope, prefix: &str, n: usize) -> usize {
    let caller = Caller::new("tester");
    for i in 0..n {
        let op = WriteOp::CreateEntity {
            id: format!("{prefix}{i}"),
            entity_type: "t".into(),
            properties: json!({"n": i}).as_object().unwrap().clone(),
        };
        store.write(scope, &caller, vec![op]).await.unwrap();
    }
    for i in (0..n).step_by(5) {
        let op = WriteOp::DeleteEntity {
            id: format!("{prefix}{i}"),
            expected_version: None,
        };
        store.write(scope, &caller, vec![op]).await.unwrap();
    }
    n + n.div_ceil(5)
}

/// A cursor that has not moved since the stale time no longer holds the
/// feed (its consumer is gone: a model replaced, Meilisearch removed); one
/// that has still does.
async fn a_cursor_left_behind_stops_holding_the_feed(store: DynStore) {
    let scope = project(&store).await;
    let saved_at = strata::clock::now();
    store.save_feed_cursor("gone", 0).await.unwrap();
    let written = write_changes(&store, &scope, "e", 10).await as u64;
    let long_ago = "2000-01-01T00:00:00.000000Z";
    let future = "2999-01-01T00:00:00.000000Z";
    assert_eq!(store.prune_feed(future, long_ago, 100).await.unwrap(), 0);
    let held = store.prune_feed(future, &saved_at, 100).await.unwrap();
    assert_eq!(held, 0, "moved since");
    assert_eq!(
        store.prune_feed(future, future, 100).await.unwrap(),
        written
    );
    assert_eq!(
        store.feed_bounds().await.unwrap().horizon,
        store.feed_bounds().await.unwrap().head
    );
}

on_both_stores!(
    consumers_follow_the_outbox_and_prune_it,
    a_consumer_new_to_a_pruned_feed_rebuilds_from_the_data,
    a_cursor_left_behind_stops_holding_the_feed,
);

async fn consumers_follow_the_outbox_and_prune_it(store: DynStore) {
    let scope = project(&store).await;
    let written = write_changes(&store, &scope, "e", 60).await;
    let steady = Recorder::new("steady", 0);
    let flaky = Recorder::new("flaky", 3);
    let feed = Feed::new(
        store.clone(),
        vec![steady.clone(), flaky.clone()],
        settings(7, Duration::ZERO),
    );
    let life = Lifecycle::new();
    feed.start(&life);
    // More changes while the consumers run.
    let written = written + write_changes(&store, &scope, "f", 20).await;

    for r in [&steady, &flaky] {
        eventually(Duration::from_secs(60), || async {
            r.seqs().len() >= written
        })
        .await;
        let seqs = r.seqs();
        assert_eq!(seqs.len(), written, "{}: each change once", r.name);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: in feed order",
            r.name
        );
        assert!(r.seen.lock().unwrap().iter().all(|c| c.scope == scope));
    }
    let head = store.feed_bounds().await.unwrap().head;
    for name in ["steady", "flaky"] {
        eventually(Duration::from_secs(10), || async {
            store.feed_cursor(name).await.unwrap() == Some(head)
        })
        .await;
    }
    let reports = feed.report();
    let flaky_report = reports.iter().find(|r| r.name == "flaky").unwrap();
    assert!(
        flaky_report.failures >= 3,
        "failures are counted: {reports:?}"
    );
    assert!(reports.iter().all(|r| r.leader));

    // Both consumers passed everything and nothing is retained for
    // readers: the outbox keeps at most one batch.
    eventually(Duration::from_secs(30), || async {
        store.list_changes(&scope, 0, 1000).await.unwrap().len() <= 7
    })
    .await;
    let bounds = store.feed_bounds().await.unwrap();
    assert!(bounds.horizon > 1, "{bounds:?}");
    // A reader whose cursor is older than what is retained is told so.
    let old = store.list_changes(&scope, 1, 10).await.unwrap_err();
    assert!(matches!(old, DomainError::Gone(_)), "{old:?}");
    // From 0 it reads on from the oldest retained.
    store.list_changes(&scope, 0, 10).await.unwrap();
    // A new change still reaches both.
    let more = write_changes(&store, &scope, "g", 1).await;
    for r in [&steady, &flaky] {
        eventually(Duration::from_secs(30), || async {
            r.seqs().len() == written + more
        })
        .await;
    }
    assert_eq!(steady.rebuilds.load(Ordering::SeqCst), 0);
    life.stop("test", Duration::from_secs(10)).await;
}

async fn a_consumer_new_to_a_pruned_feed_rebuilds_from_the_data(store: DynStore) {
    let scope = project(&store).await;
    write_changes(&store, &scope, "e", 10).await;
    // No consumer yet: the outbox keeps only what the retention asks.
    let idle = Feed::new(store.clone(), Vec::new(), settings(100, Duration::ZERO));
    assert!(idle.prune().await.unwrap() > 0);
    let pruned = store.feed_bounds().await.unwrap();
    assert!(pruned.horizon > 0);

    let late = Recorder::new("late", 0);
    let feed = Feed::new(
        store.clone(),
        vec![late.clone()],
        settings(100, Duration::from_secs(3600)),
    );
    let life = Lifecycle::new();
    feed.start(&life);
    eventually(Duration::from_secs(30), || async {
        late.rebuilds.load(Ordering::SeqCst) == 1
    })
    .await;
    // It goes on from the head it rebuilt at: only changes after it come.
    let written = write_changes(&store, &scope, "n", 3).await;
    eventually(Duration::from_secs(30), || async {
        late.seqs().len() == written
    })
    .await;
    assert!(late.seqs().iter().all(|s| *s > pruned.head));
    assert_eq!(late.rebuilds.load(Ordering::SeqCst), 1);
    life.stop("test", Duration::from_secs(10)).await;
}

/// Several daemons on one PostgreSQL: one leads each consumer; when it
/// stops, another takes over from the durable cursor and nothing is lost.
/// A consumer reads each entity at least as new as the change it applies,
/// even while the entity cache above the store holds the state before:
/// here a second store on the same file writes, as another daemon would,
/// so the first one's cache never hears of it.
#[tokio::test]
async fn a_consumer_reads_past_a_cache_that_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (this, other) = (
        support::sqlite_store(dir.path()).await,
        support::sqlite_store(dir.path()).await,
    );
    let scope = project(&this).await;
    write_changes(&this, &scope, "e", 1).await;
    // e0 is made and deleted; its deleted state goes into the cache.
    let deleted = EntityRead {
        include_deleted: true,
        ..Default::default()
    };
    assert_eq!(
        this.get_entity(&scope, "e0", &deleted)
            .await
            .unwrap()
            .version,
        2
    );
    let restore = WriteOp::RestoreEntity { id: "e0".into() };
    let patch = WriteOp::PatchEntity {
        id: "e0".into(),
        patch: json!({"n": 7}),
        entity_type: None,
        expected_version: None,
    };
    let caller = Caller::new("tester");
    other.write(&scope, &caller, vec![restore]).await.unwrap();
    other.write(&scope, &caller, vec![patch]).await.unwrap();
    let cached = this.get_entity(&scope, "e0", &Default::default()).await;
    assert!(cached.is_err(), "the cache still holds e0 deleted");

    let changes = this.read_feed(0, 100).await.unwrap();
    let by_scope = strata::feed::entities_by_scope(&changes);
    let states = strata::feed::current_states(&this, &scope, by_scope[&scope].clone())
        .await
        .unwrap();
    let e0 = states[0]
        .1
        .as_ref()
        .expect("e0 is live after its last change");
    assert_eq!((e0.version, &e0.properties["n"]), (4, &json!(7)));
}

#[tokio::test]
async fn one_daemon_leads_a_consumer_and_another_takes_over() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = support::pg_store(dirs[0].path(), &url).await;
    let second = support::pg_store(dirs[1].path(), &url).await;
    let scope = project(&first).await;
    let (a, b) = (Recorder::new("index", 0), Recorder::new("index", 0));
    let keep = Duration::from_secs(3600);
    let feed_a = Feed::new(first.clone(), vec![a.clone()], settings(10, keep));
    let feed_b = Feed::new(second.clone(), vec![b.clone()], settings(10, keep));
    let (life_a, life_b) = (Lifecycle::new(), Lifecycle::new());
    feed_a.start(&life_a);
    feed_b.start(&life_b);
    let written = write_changes(&first, &scope, "e", 40).await;
    eventually(Duration::from_secs(60), || async {
        a.seqs().len() + b.seqs().len() >= written
    })
    .await;
    let leaders = |f: &Feed| f.report().iter().filter(|r| r.leader).count();
    assert_eq!(
        leaders(&feed_a) + leaders(&feed_b),
        1,
        "one leader: {:?} {:?}",
        feed_a.report(),
        feed_b.report()
    );
    let (leader, leader_life, other, other_feed) = if leaders(&feed_a) == 1 {
        (first.clone(), life_a, b.clone(), feed_b.clone())
    } else {
        (second.clone(), life_b, a.clone(), feed_a.clone())
    };
    // The leader stops (its lease goes with its connections).
    leader_life.stop("test", Duration::from_secs(10)).await;
    leader.close().await;
    let more = write_changes(&first_open(&first, &second, &leader), &scope, "f", 10).await;
    eventually(Duration::from_secs(60), || async {
        leaders(&other_feed) == 1
    })
    .await;
    // Every change reached one of them, in order, none skipped. (A feed
    // read positions new changes unless another daemon is doing so at that
    // moment: then it sees them on a later read.)
    let open = first_open(&first, &second, &leader);
    eventually(Duration::from_secs(10), || async {
        open.list_changes(&scope, 0, 1000).await.unwrap().len() == written + more
    })
    .await;
    let all: Vec<i64> = open
        .list_changes(&scope, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    eventually(Duration::from_secs(60), || async {
        let mut seen = a.seqs();
        seen.extend(b.seqs());
        seen.sort();
        seen.dedup();
        seen == all
    })
    .await;
    assert!(other.seqs().windows(2).all(|w| w[0] < w[1]));
}

/// The store of the two that is still open.
fn first_open(first: &DynStore, second: &DynStore, closed: &DynStore) -> DynStore {
    if Arc::ptr_eq(first, closed) {
        second.clone()
    } else {
        first.clone()
    }
}

/// Two daemons write while readers on both page through the feed from
/// their own cursors: each reader sees every change exactly once, at
/// increasing positions. (A sequencing statement's snapshot predates its
/// lock, so it could give rows another daemon had just positioned a
/// second, later position, and a reader already past the first saw them
/// again. The window is narrow: the readers make many reads.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_on_two_daemons_see_each_change_once() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut stores = Vec::new();
    for dir in &dirs {
        stores.push(support::pg_store(dir.path(), &url).await);
    }
    let scope = project(&stores[0]).await;
    // Total changes, known once every writer is done.
    let written = Arc::new(AtomicUsize::new(usize::MAX));
    let readers: Vec<_> = stores
        .iter()
        .flat_map(|s| [s.clone(), s.clone()])
        .map(|store| {
            let (scope, written) = (scope.clone(), written.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut cursor = 0;
                while seen.len() < written.load(Ordering::SeqCst) {
                    let page = store.list_changes(&scope, cursor, 50).await.unwrap();
                    if let Some(last) = page.last() {
                        cursor = last.seq;
                    }
                    seen.extend(page);
                }
                // Nothing comes after the last change.
                assert!(store
                    .list_changes(&scope, cursor, 50)
                    .await
                    .unwrap()
                    .is_empty());
                seen
            })
        })
        .collect();
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let (store, scope) = (store.clone(), scope.clone());
            tokio::spawn(async move { write_changes(&store, &scope, &format!("w{n}-"), 150).await })
        })
        .collect();
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    written.store(total, Ordering::SeqCst);
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("a reader saw every change within a minute")
            .unwrap();
        assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
        let mut changes: Vec<_> = seen.iter().map(|c| (&c.id, &c.op, c.version)).collect();
        changes.sort();
        changes.dedup();
        assert_eq!(
            (changes.len(), seen.len()),
            (total, total),
            "each change once"
        );
    }
}
