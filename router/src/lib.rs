//! Reads the ingest topic and hands each record to its source's supervisor actor.
//!
//! Delivery guarantee: at-least-once. A partition's offset is committed only up to the
//! contiguous prefix of records that every target has finished with (delivered,
//! dead-lettered, parked in the retry topic, or dropped as a duplicate), so a crash or a rebalance repeats only
//! records that were in flight; destinations see duplicates only then.

pub mod consumer;
pub mod dead_letter;
pub mod offsets;
pub mod plan;
pub mod retry;
pub mod tap;
pub mod topology;

pub use consumer::{ConsumerError, ConsumerStats, RouterConsumer};
pub use dead_letter::DeadLetterWriter;
pub use topology::{ActorReport, ArchiveSetup, Detail, ReloadSummary, Topology, TopologyError, TopologyOptions};
