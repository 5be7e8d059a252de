//! The change feed's consumers: what is derived from the data (search
//! indexes, embeddings) follows the outbox through them. `consumer` says
//! what a consumer is, `runner` runs each with one leader across daemons,
//! `status` reports their lag.

pub mod consumer;
pub mod embeddings;
pub mod meili;
pub mod reads;
pub mod runner;
pub mod status;

pub use consumer::{Consumer, FeedChange};
pub use reads::{
    all_projects, all_projects_made, current, current_states, entities_by_scope, made_at,
};
pub use runner::FeedSettings;
pub use status::{ConsumerReport, FeedStatus};

use crate::lifecycle::Lifecycle;
use crate::store::DynStore;
use std::sync::Arc;

/// The daemon's consumers with their settings and status; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    store: DynStore,
    consumers: Arc<Vec<Arc<dyn Consumer>>>,
    settings: FeedSettings,
    status: Arc<FeedStatus>,
}

impl Feed {
    pub fn new(store: DynStore, consumers: Vec<Arc<dyn Consumer>>, settings: FeedSettings) -> Self {
        Feed {
            store,
            consumers: Arc::new(consumers),
            settings,
            status: Arc::default(),
        }
    }

    /// Starts every consumer's runner on the lifecycle.
    pub fn start(&self, lifecycle: &Lifecycle) {
        runner::start(
            self.store.clone(),
            &self.consumers,
            &self.settings,
            &self.status,
            lifecycle,
        );
    }

    /// Prunes what every consumer has passed and the retention allows.
    pub async fn prune(&self) -> crate::domain::DomainResult<u64> {
        runner::prune(
            &self.store,
            self.settings.retention,
            runner::PRUNE_BATCH,
            100,
        )
        .await
    }

    pub fn report(&self) -> Vec<ConsumerReport> {
        self.status.report()
    }
}
