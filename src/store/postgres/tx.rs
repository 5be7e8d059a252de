//! The write transaction: its BEGIN travels with the project lock, one round
//! trip for both. tokio-postgres sends requests in the order their futures
//! are first polled, and the server runs them in that order.

use super::rows::pg_err;
use super::tenancy;
use crate::domain::{DomainResult, Scope};
use deadpool_postgres::Object;

pub struct WriteTx {
    client: Option<Object>,
    open: bool,
}

impl WriteTx {
    /// Begins and takes the project's share lock; returns the project's pk.
    pub async fn begin(client: Object, scope: &Scope) -> DomainResult<(Self, i64)> {
        let tx = WriteTx {
            client: Some(client),
            open: true,
        };
        let c = tx.client();
        let (begun, pk) = tokio::join!(c.batch_execute("BEGIN"), tenancy::lock_project(c, scope));
        begun.map_err(pg_err)?;
        let pk = pk?;
        Ok((tx, pk))
    }

    pub fn client(&self) -> &Object {
        self.client.as_ref().expect("present until dropped")
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
        if let (true, Some(client)) = (self.open, self.client.take()) {
            tokio::spawn(async move {
                if let Err(e) = client.batch_execute("ROLLBACK").await {
                    tracing::debug!(error = %e, "rollback failed; the connection is dropped");
                }
            });
        }
    }
}
