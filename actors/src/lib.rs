//! The actor side of the router: one [`SourceSupervisor`] per source receives that
//! source's records from Kafka, checks them again (external producers skip ingest) and
//! fans them out to the actors that deliver them.
//!
//! This is the first slice: fan-out goes to [`LogDestination`], which writes each event
//! to the log so a local run shows events flowing. Destination actors with credentials
//! and retry state, dedup and the archive follow.

pub mod log_destination;
pub mod source;

pub use log_destination::LogDestination;
pub use source::{GetStats, Inbound, Outcome, Routed, SourceSupervisor, SupervisorStats};
