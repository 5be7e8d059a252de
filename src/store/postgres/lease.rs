//! Leases across daemons (a document's compaction, a feed consumer's
//! leadership): a session-level advisory lock on the lease's key, held on a
//! pooled connection of its own.

use super::PgStore;
use crate::domain::DomainResult;
use crate::lifecycle::Lifecycle;
use crate::store::{Lease, LeaseGuard};

impl PgStore {
    /// The lease of `key`, or None while another session holds it.
    pub(super) async fn try_lease(&self, key: String) -> DomainResult<Option<Lease>> {
        // A single-connection pool (PGlite) cannot spare a connection to hold
        // the lock, and serves one daemon anyway.
        if self.pool.status().max_size <= 1 {
            return Ok(Some(Lease::new(())));
        }
        let client = self.client().await?;
        let row = super::rows::query_opt(
            &client,
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await?;
        if !row.is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(None);
        }
        Ok(Some(Lease::new(AdvisoryLease::new(
            client,
            key,
            &self.tasks,
        ))))
    }
}

/// A session-level advisory lock held on its own pooled connection; released
/// on drop by a task `close` waits for (and by PostgreSQL if the daemon dies).
pub struct AdvisoryLease {
    client: Option<deadpool_postgres::Object>,
    key: String,
    tasks: Lifecycle,
}

impl AdvisoryLease {
    pub fn new(client: deadpool_postgres::Object, key: String, tasks: &Lifecycle) -> Self {
        AdvisoryLease {
            client: Some(client),
            key,
            tasks: tasks.clone(),
        }
    }
}

/// Lost when its connection closed: PostgreSQL released the lock with it.
impl LeaseGuard for AdvisoryLease {
    fn is_lost(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.is_closed())
    }
}

impl Drop for AdvisoryLease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let key = std::mem::take(&mut self.key);
            self.tasks.spawn(async move {
                let unlock = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";
                if let Err(e) = client.execute(unlock, &[&key]).await {
                    tracing::warn!(error = %e, "could not release a document lease");
                }
            });
        }
    }
}
