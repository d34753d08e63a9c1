//! The configuration every process shares, as plain serde types with their checks and
//! no IO beyond resolving the host names a destination names (the egress check): the
//! Kafka cluster and how it is reached (`kafka.rs`), the sources (`sources.rs`), the destinations with each kind's
//! settings (`destination/`), and the transform steps they carry. The control plane
//! validates a workspace with this crate alone, without the data path's actors, Kafka
//! clients or loaders; the router and ingest run what it describes.
//!
//! Every table refuses unknown keys, so a misspelt setting is an error, not a default.

pub mod destination;
mod forwarded;
mod kafka;
mod sources;

pub use destination::{
    AmplitudeConfig, AmplitudeRegion, BlackholeConfig, DestinationConfig, DestinationConfigError, DestinationKind,
    DestinationTls, ExportConfig, KAFKA_SECRET_OPTIONS, KafkaDestinationConfig, MAX_BUFFERED_EVENTS, MixpanelConfig,
    MixpanelRegion, Ordering, RetryConfig, SegmentConfig, TlsVersion, WarehouseConfig, WebhookConfig,
};
pub use forwarded::forwarded_client;
pub use kafka::{
    KafkaConfig, KafkaSasl, KafkaSettingsError, KafkaTls, SASL_PASSWORD_ENV, SASL_USERNAME_ENV, SaslMechanism,
    SecurityProtocol,
};
pub use sources::*;
pub use switchyard_egress::{EgressError, EgressPolicy};
pub use switchyard_transform::{Transform, TransformConfig, TransformError};
