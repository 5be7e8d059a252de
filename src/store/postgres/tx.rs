//! The write transaction: BEGIN, the project's share lock and the first
//! op's first statement travel together, one round trip for all three.
//! tokio-postgres sends requests in the order their futures are first
//! polled, and the server runs them in that order.

use super::rows::pg_err;
use super::tenancy;
use crate::domain::{DomainResult, Scope};
use deadpool_postgres::Object;
use std::future::Future;

pub struct WriteTx {
    client: Option<Object>,
    open: bool,
}

impl WriteTx {
    pub fn new(client: Object) -> Self {
        WriteTx {
            client: Some(client),
            // From the start: a ROLLBACK without a BEGIN is only a warning.
            open: true,
        }
    }

    pub fn client(&self) -> &Object {
        self.client.as_ref().expect("present until dropped")
    }

    /// Begins, takes the project's share lock (its pk is returned) and runs
    /// `first` — the first op, whose statements queue behind the lock. A
    /// missing project is reported before anything `first` found.
    pub async fn begin<T>(
        &self,
        scope: &Scope,
        first: impl Future<Output = T>,
    ) -> DomainResult<(i64, T)> {
        let c = self.client();
        // Prepared ahead (once per connection), so that the lock is sent
        // in this very poll, before anything `first` sends.
        let lock = tenancy::prepare_lock_project(c).await?;
        let (begun, pk, first) = futures_util::join!(
            c.batch_execute("BEGIN"),
            tenancy::lock_project_with(c, &lock, scope),
            first
        );
        begun.map_err(pg_err)?;
        Ok((pk?, first))
    }

    pub async fn commit(mut self) -> DomainResult<()> {
        self.open = false;
        self.client().batch_execute("COMMIT").await.map_err(pg_err)
    }
}

impl Drop for WriteTx {
    /// Not committed (an error, or the request was dropped): roll back
    /// before the connection goes back to the pool.
    fn drop(&mut self) {
        let Some(client) = self.client.take().filter(|_| self.open) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.batch_execute("ROLLBACK").await {
                        tracing::debug!(error = %e, "rollback failed; the connection is dropped");
                    }
                });
            }
            // No runtime (shutting down): close the connection rather than
            // return it to the pool inside a transaction.
            Err(_) => drop(Object::take(client)),
        }
    }
}
