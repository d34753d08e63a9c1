//! Reads the ingest topic and hands each record to its source's supervisor actor.
//!
//! First slice: one consumer in a consumer group, records dispatched in order and the
//! offset stored only after the supervisor has taken the record. The offset tracker,
//! rebalance handling, retry and dead-letter topics come with the routing work.

pub mod consumer;
pub mod topology;

pub use consumer::{ConsumerError, run_consumer};
pub use topology::Topology;
