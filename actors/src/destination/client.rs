//! The clients a destination actor can hold, behind one interface: how many events a
//! request may carry, and sending them.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;
use switchyard_warehouse::{Exporter, LoadError, Warehouse};

use super::config::{DestinationKind, EgressPolicy, WarehouseConfig};
use super::kafka::KafkaClient;
use super::webhook::{DeliveryError, WebhookClient};

#[derive(Debug, Clone)]
pub enum Client {
    Webhook(WebhookClient),
    Kafka(KafkaClient),
    Warehouse(Arc<Warehouse>, BatchShape),
    Export(Arc<Exporter>, BatchShape),
}

/// How a batch destination fills a load: up to `max_events`, waiting at most `linger`
/// for them.
#[derive(Debug, Clone, Copy)]
pub struct BatchShape {
    pub max_events: usize,
    pub linger: Duration,
}

impl Client {
    /// `None` for a blackhole, which needs no client. Must run on the actor's thread.
    /// Every client checks where it connects against `egress` when it connects.
    pub fn new(kind: &DestinationKind, egress: &Arc<EgressPolicy>) -> Result<Option<Client>, String> {
        Ok(match kind {
            DestinationKind::Webhook(webhook) => Some(Client::Webhook(WebhookClient::new(
                Arc::new(webhook.clone()),
                egress.clone(),
            )?)),
            DestinationKind::Kafka(kafka) => Some(Client::Kafka(KafkaClient::new(kafka, egress.clone())?)),
            DestinationKind::PostgresWarehouse(config) => Some(Client::Warehouse(
                shared_warehouse(config, egress)?,
                BatchShape {
                    max_events: config.batch_max_events,
                    linger: Duration::from_millis(config.batch_max_wait_ms),
                },
            )),
            DestinationKind::ObjectStorageExport(config) => Some(Client::Export(
                Arc::new(Exporter::new(config, egress).map_err(|e| e.reason)?),
                BatchShape {
                    max_events: config.batch_max_events,
                    linger: Duration::from_millis(config.batch_max_wait_ms),
                },
            )),
            DestinationKind::Blackhole(_) => None,
        })
    }

    pub fn batch_max_events(&self) -> usize {
        match self {
            Client::Webhook(webhook) => webhook.batch_max_events(),
            Client::Kafka(kafka) => kafka.batch_max_events(),
            Client::Warehouse(_, shape) | Client::Export(_, shape) => shape.max_events,
        }
    }

    /// How long a partial batch may wait for more events (zero: send at once).
    pub fn batch_linger(&self) -> Duration {
        match self {
            Client::Warehouse(_, shape) | Client::Export(_, shape) => shape.linger,
            Client::Webhook(_) | Client::Kafka(_) => Duration::ZERO,
        }
    }

    pub fn send(
        &self,
        source_id: Arc<str>,
        events: Vec<Arc<Event>>,
    ) -> LocalBoxFuture<'static, Result<(), DeliveryError>> {
        match self {
            Client::Webhook(webhook) => {
                let body = match webhook.body(&events) {
                    Ok(body) => body,
                    Err(error) => {
                        let error = DeliveryError::permanent(format!("event could not be encoded: {error}"));
                        return Box::pin(futures::future::ready(Err(error)));
                    }
                };
                Box::pin(webhook.clone().send(body))
            }
            Client::Kafka(kafka) => Box::pin(kafka.clone().send(source_id, events)),
            Client::Warehouse(warehouse, _) => {
                let warehouse = warehouse.clone();
                Box::pin(async move {
                    let loaded = warehouse.load(&source_id, &events).await.map_err(delivery_error)?;
                    tracing::debug!(%source_id, rows = loaded.rows, existing = loaded.existing, "warehouse batch loaded");
                    Ok(())
                })
            }
            Client::Export(exporter, _) => {
                let exporter = exporter.clone();
                Box::pin(async move {
                    exporter.export(&source_id, &events).await.map_err(delivery_error)?;
                    Ok(())
                })
            }
        }
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

fn delivery_error(error: LoadError) -> DeliveryError {
    if error.retryable {
        DeliveryError::retryable(error.reason)
    } else {
        DeliveryError::permanent(error.reason)
    }
}
