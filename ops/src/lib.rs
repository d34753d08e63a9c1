//! The operations port, served by every process: `/metrics` (Prometheus text format),
//! `/healthz` (liveness), `/readyz` (readiness), `/actors` (every running actor, as
//! JSON) and `/overview` (delivery per source and destination, with recent errors). Metrics are read from the running parts at scrape time (actor counters, the
//! consumer's and ingest's atomics), so what `/metrics` says is what `/actors` says.
//!
//! Label cardinality: `source` and `destination` take only configured ids (bounded by
//! the configuration, which limits their characters and length); `outcome`, `reason`, `stage`,
//! `error_type` and `state` take a fixed set of values; `partition` is bounded by the
//! topic's partitions. No label ever carries a user, an event name or a messageId, so
//! the number of series grows with the configuration, never with traffic. A removed
//! source or destination disappears from the next scrape; a replaced destination's
//! counters start again from zero (a counter reset, which `rate()` handles).

pub mod health;
pub mod metrics;
pub mod overview;
pub mod server;
pub mod state;

pub use health::Readiness;
pub use server::{OpsConfig, bind};
pub use state::Ops;
