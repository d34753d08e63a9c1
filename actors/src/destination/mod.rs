//! Destination actors: one per (source, destination), each holding that integration's
//! credentials and retry state, so one failing or slow destination never holds up
//! another.

mod actor;
mod breaker;
mod client;
pub mod config;
pub mod gate;
pub mod kafka;
mod retry;
pub mod tls;
pub mod webhook;

pub use actor::{ActorState, DestinationActor, DestinationStats, GetDestinationStats, Retire, latency_histogram};
pub use config::{
    BlackholeConfig, DestinationConfig, DestinationKind, DestinationTls, KafkaDestinationConfig, Ordering, RetryConfig,
    TlsVersion, WebhookConfig,
};
