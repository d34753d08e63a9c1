//! Batch destinations. `postgres.rs` loads events into a Postgres warehouse in
//! Segment's warehouse schema (one schema per source, a table per event type and per
//! track event, columns added as events evolve), with `COPY`, keyed on the messageId
//! so a retried batch adds nothing twice. `export.rs` writes batches as gzip JSONL to a
//! customer's bucket. Both return a [`LoadError`] that says whether a retry can help;
//! the destination actor (`switchyard-actors`) batches, retries and dead-letters.

pub mod columns;
/// The two kinds' settings, in the shared configuration crate.
pub mod config {
    pub use switchyard_config::destination::{ExportConfig, WarehouseConfig, redact_password};
}
mod egress_http;
pub mod export;
pub mod flatten;
pub mod postgres;

pub use columns::ColumnType;
pub use config::{ExportConfig, WarehouseConfig};
pub use export::Exporter;
pub use postgres::Warehouse;

/// A failed load or export, and whether trying the same batch again can succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LoadError {
    pub reason: String,
    pub retryable: bool,
}

impl LoadError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        LoadError {
            reason: reason.into(),
            retryable: true,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        LoadError {
            reason: reason.into(),
            retryable: false,
        }
    }
}
