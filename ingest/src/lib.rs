//! The HTTP edge: a Segment-compatible collection API that authenticates each request
//! by write key, refuses what breaks the spec or the limits with a reason, enriches
//! what it accepts, and answers 200 only once Kafka has every record (acks=all).

mod body;
pub mod browser;
pub mod config;
mod error;
pub mod producer;
mod routes;
pub mod server;
pub mod sources;
mod state;
pub mod tls;
pub mod webhooks;

pub use config::IngestConfig;
pub use error::IngestError;
pub use producer::{KafkaSink, ProduceError};
pub use routes::configure;
pub use sources::{SourceRegistry, SourceSpec};
pub use state::{IngestState, Refused};
