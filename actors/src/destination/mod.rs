//! Destination actors: one per (source, destination), each holding that integration's
//! credentials and retry state, so one failing or slow destination never holds up
//! another.

mod actor;
mod breaker;
pub mod config;
mod retry;
pub mod webhook;

pub use actor::{DestinationActor, DestinationStats, GetDestinationStats};
pub use config::{BlackholeConfig, DestinationConfig, DestinationKind, RetryConfig, WebhookConfig};
