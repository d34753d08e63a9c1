//! Transforms, per source (before fan-out) and per destination (before sending): drop
//! events matching a condition, rename, drop or allow-list fields, hash (salted SHA-256)
//! or redact PII, sample. Conditions are VRL expressions (see `condition.rs`), compiled
//! when the configuration is loaded so a mistake is reported with its position before
//! anything starts. A transform that fails on an event sends it to the dead-letter
//! topic with the reason.

mod chain;
mod condition;
mod ops;
mod sections;

pub use chain::Transform;
pub use condition::Condition;
pub use ops::{TransformConfig, TransformError, Transformed};
