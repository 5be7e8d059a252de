//! Document leases across daemons: a compaction holds a session-level
//! advisory lock on the document's key, on a pooled connection of its own.

use crate::lifecycle::Lifecycle;

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
