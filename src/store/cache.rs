//! Entity read cache shared by the backends.
//!
//! Readers may race writers: a reader that loaded a state must not put it
//! back after a writer stored a newer one. Each slot carries the change
//! sequence of the state it holds and is replaced only by a later one.
//! Purges leave a tombstone ranked at the purge's change sequence.

use crate::domain::{Entity, Scope};
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Slot {
    rank: i64,
    entity: Option<Arc<Entity>>,
}

type Key = (String, String, String);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
}

pub struct EntityCache {
    slots: Cache<Key, Slot>,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn key(scope: &Scope, id: &str) -> Key {
    (scope.org.clone(), scope.project.clone(), id.to_owned())
}

impl EntityCache {
    /// `ttl` bounds how long an entry is served when a change notice may
    /// be lost (several daemons); one daemon alone needs none.
    pub fn new(capacity: u64, ttl: Option<Duration>) -> Self {
        let mut slots = Cache::builder().max_capacity(capacity);
        if let Some(ttl) = ttl {
            slots = slots.time_to_live(ttl);
        }
        EntityCache {
            slots: slots.build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached current state (deleted entities included), if any.
    pub fn get(&self, scope: &Scope, id: &str) -> Option<Arc<Entity>> {
        let found = self.slots.get(&key(scope, id)).and_then(|s| s.entity);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `entity` unless a state from a later change is cached. Readers
    /// and writers both go through here, so arrival order does not matter.
    pub fn offer(&self, scope: &Scope, entity: Arc<Entity>) {
        self.put_if_newer(scope, &entity.id.clone(), entity.change_seq, Some(entity));
    }

    /// The entity changed (or was erased) at change `seq`: states older than
    /// `seq` must not be served or put back; the state of `seq` itself may.
    pub fn tombstone(&self, scope: &Scope, id: &str, seq: i64) {
        self.put_if_newer(scope, id, seq, None);
    }

    fn put_if_newer(&self, scope: &Scope, id: &str, rank: i64, entity: Option<Arc<Entity>>) {
        self.slots
            .entry(key(scope, id))
            .and_compute_with(|existing| match existing {
                // An equal rank replaces a tombstone (the state it announced)
                // but never a state.
                Some(e)
                    if e.value().rank > rank
                        || (e.value().rank == rank && e.value().entity.is_some()) =>
                {
                    Op::Nop
                }
                _ => Op::Put(Slot { rank, entity }),
            });
    }

    /// Forgets everything (a project or org was deleted).
    pub fn clear(&self) {
        self.slots.invalidate_all();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.slots.entry_count(),
        }
    }
}
