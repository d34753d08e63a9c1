//! Every destination kind, one folder each, all behind [`Delivery`].

pub mod amplitude;
pub mod blackhole;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod http;
pub mod kafka;
pub mod mixpanel;
pub mod object_storage_export;
pub mod postgres_warehouse;
pub mod segment;
pub mod webhook;

use std::sync::Arc;

use super::config::{DestinationKind, EgressPolicy};
use super::delivery::{Delivery, boxed};

/// The client for a destination's kind. Must run on the actor's thread.
pub fn connect(kind: &DestinationKind, egress: &Arc<EgressPolicy>) -> Result<Box<dyn Delivery>, String> {
    match kind {
        DestinationKind::Webhook(settings) => boxed::<webhook::WebhookClient>(settings, egress),
        DestinationKind::Kafka(settings) => boxed::<kafka::KafkaClient>(settings, egress),
        DestinationKind::PostgresWarehouse(settings) => boxed::<postgres_warehouse::Loader>(settings, egress),
        DestinationKind::ObjectStorageExport(settings) => boxed::<object_storage_export::Export>(settings, egress),
        DestinationKind::Blackhole(settings) => boxed::<blackhole::Blackhole>(settings, egress),
        DestinationKind::Segment(settings) => boxed::<segment::SegmentClient>(settings, egress),
        DestinationKind::Amplitude(settings) => boxed::<amplitude::AmplitudeClient>(settings, egress),
        DestinationKind::Mixpanel(settings) => boxed::<mixpanel::MixpanelClient>(settings, egress),
    }
}
