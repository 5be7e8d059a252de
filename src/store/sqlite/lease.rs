//! Document leases on SQLite: one daemon per file, so a set of the
//! documents being compacted, local to the store, suffices.

use crate::domain::Scope;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The documents leased now, shared by the store and its leases.
pub type Leased = Arc<Mutex<HashSet<(Scope, String)>>>;

/// Releases a document on drop.
pub struct LocalLease {
    leases: Leased,
    key: (Scope, String),
}

impl LocalLease {
    /// The document's lease, or None while another holds it.
    pub fn take(leases: &Leased, scope: &Scope, doc: &str) -> Option<Self> {
        let key = (scope.clone(), doc.to_owned());
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
