//! Batches as gzip JSONL objects in the customer's bucket (the writer is in
//! `switchyard-warehouse`): up to `batch_max_events`, or what came within
//! `batch_max_wait_ms`, one object per received date.

use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;
use switchyard_warehouse::Exporter;

use super::postgres_warehouse::load_error;
use crate::destination::config::{EgressPolicy, ExportConfig};
use crate::destination::delivery::{Answer, Batching, Delivery, Kind};

#[derive(Debug)]
pub struct Export {
    exporter: Arc<Exporter>,
    batching: Batching,
}

impl Kind for Export {
    type Settings = ExportConfig;

    fn connect(config: &ExportConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        Ok(Export {
            exporter: Arc::new(Exporter::new(config, egress).map_err(|e| e.reason)?),
            batching: Batching {
                linger: Duration::from_millis(config.batch_max_wait_ms),
                ..Batching::events(config.batch_max_events)
            },
        })
    }
}

impl Delivery for Export {
    fn batching(&self) -> Batching {
        self.batching
    }

    fn deliver(&self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let exporter = self.exporter.clone();
        Box::pin(async move {
            match exporter.export(&source_id, &events).await {
                Ok(_) => Answer::Delivered,
                Err(error) => Answer::Failed(load_error(error)),
            }
        })
    }
}
