//! A Postgres database in Segment's warehouse schema (the loader is in
//! `switchyard-warehouse`): batches of up to `batch_max_events`, or what came within
//! `batch_max_wait_ms`, each loaded in one transaction.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;
use switchyard_warehouse::{LoadError, Warehouse};

use crate::destination::config::{EgressPolicy, WarehouseConfig};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};

#[derive(Debug)]
pub struct Loader {
    warehouse: Arc<Warehouse>,
    batching: Batching,
}

impl Kind for Loader {
    type Settings = WarehouseConfig;

    fn connect(config: &WarehouseConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        Ok(Loader {
            warehouse: shared_warehouse(config, egress)?,
            batching: Batching {
                linger: Duration::from_millis(config.batch_max_wait_ms),
                ..Batching::events(config.batch_max_events)
            },
        })
    }
}

impl Delivery for Loader {
    fn batching(&self) -> Batching {
        self.batching
    }

    fn deliver(&self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let warehouse = self.warehouse.clone();
        Box::pin(async move {
            match warehouse.load(&source_id, &events).await {
                Ok(loaded) => {
                    tracing::debug!(%source_id, rows = loaded.rows, existing = loaded.existing, "warehouse batch loaded");
                    Answer::Delivered
                }
                Err(error) => Answer::Failed(load_error(error)),
            }
        })
    }
}

/// One loader (and so one connection pool) per warehouse configuration in the process,
/// shared by the destination's actor of every source: connections would otherwise grow
/// with the number of sources. Its connections serve whichever actor thread asks;
/// every actor thread lives as long as the process.
fn shared_warehouse(config: &WarehouseConfig, egress: &Arc<EgressPolicy>) -> Result<Arc<Warehouse>, String> {
    type Loaders = Vec<(WarehouseConfig, Arc<EgressPolicy>, Weak<Warehouse>)>;
    static LOADERS: Mutex<Loaders> = Mutex::new(Vec::new());
    let mut loaders = LOADERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loaders.retain(|(_, _, loader)| loader.strong_count() > 0);
    if let Some(loader) = loaders
        .iter()
        .find(|(known, policy, _)| known == config && policy == egress)
        .and_then(|(_, _, loader)| loader.upgrade())
    {
        return Ok(loader);
    }
    let loader = Arc::new(Warehouse::new(config, egress).map_err(|e| e.reason)?);
    loaders.push((config.clone(), egress.clone(), Arc::downgrade(&loader)));
    Ok(loader)
}

/// The loaders' own classification, as the actor reads it.
pub(crate) fn load_error(error: LoadError) -> DeliveryError {
    if error.retryable {
        DeliveryError::retryable(error.reason)
    } else {
        DeliveryError::permanent(error.reason)
    }
}
