//! Leases on SQLite (a document's compaction, a feed consumer's
//! leadership): one daemon per file, so a set of what is leased, local to
//! the store, suffices.

use crate::store::LeaseGuard;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The keys leased now, shared by the store and its leases.
pub type Leased = Arc<Mutex<HashSet<String>>>;

/// Releases its key on drop.
pub struct LocalLease {
    leases: Leased,
    key: String,
}

impl LeaseGuard for LocalLease {}

impl LocalLease {
    /// The key's lease, or None while another holds it.
    pub fn take(leases: &Leased, key: String) -> Option<Self> {
        if !leases.lock().expect("lease lock").insert(key.clone()) {
            return None;
        }
        Some(LocalLease {
            leases: leases.clone(),
            key,
        })
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        self.leases.lock().expect("lease lock").remove(&self.key);
    }
}
