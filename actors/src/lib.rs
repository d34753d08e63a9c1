//! The actor side of the router: one [`SourceSupervisor`] per source receives that
//! source's records from Kafka, checks them again (external producers skip ingest),
//! drops repeats, and fans them out to one [`DestinationActor`] per (source,
//! destination), which holds that integration's credentials and retry state. Every
//! fan-out carries a share of the record's [`Ack`]; the offset is committed only when
//! all shares are done.

pub mod ack;
pub mod dead_letter;
pub mod dedup;
pub mod destination;
pub mod log_destination;
pub mod park;
pub mod protocol;
pub mod samples;
pub mod source;
pub mod supervise;
pub mod suppress;
pub use switchyard_transform as transform;

#[cfg(test)]
mod test_support;

pub use ack::{Ack, Completion};
pub use dead_letter::{DeadLetter, Stage};
pub use destination::{DestinationActor, DestinationConfig, DestinationStats, GetDestinationStats};
pub use log_destination::LogDestination;
pub use park::{Park, Parked};
pub use protocol::{Budget, Inbound, InboundBatch, Outcome, Permit, Route, Routed, RoutedBatch, SupervisorHandle};
pub use samples::{ErrorSample, RecentErrors};
pub use source::{DedupSettings, GetStats, SOURCE_BUDGET, SetRoutes, SetTransform, SourceSupervisor, SupervisorStats};
pub use suppress::{SetSuppression, Suppression};
pub use switchyard_egress::EgressPolicy;
pub use transform::{Transform, TransformConfig};
