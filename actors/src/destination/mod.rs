//! Destination actors: one per (source, destination), each holding that integration's
//! credentials and retry state, so one failing or slow destination never holds up
//! another. The actor (`actor/`) is a shell over a [`queue::DeliveryQueue`] and a
//! kind's [`Delivery`] client (`kinds/`, one folder per kind).

mod actor;
mod breaker;
pub mod config;
pub mod delivery;
pub mod gate;
pub mod kinds;
pub mod queue;
mod retry;
mod stats;

pub use actor::{Connect, DestinationActor, GetDestinationStats, Retire};
pub use config::{
    BlackholeConfig, DestinationConfig, DestinationKind, DestinationTls, KafkaDestinationConfig, Ordering, RetryConfig,
    TlsVersion, WebhookConfig,
};
pub use delivery::{Answer, Batching, Delivery, DeliveryError, Kind};
pub use kinds::{kafka, webhook};
pub use stats::{ActorState, DestinationStats, latency_histogram};
