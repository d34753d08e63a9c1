//! Transforms, per source (before fan-out) and per destination (before sending): drop
//! events matching a condition, rename, drop or allow-list fields, hash (salted SHA-256)
//! or redact PII, sample. Conditions are VRL expressions (see `condition.rs`), compiled
//! when the configuration is loaded so a mistake is reported with its position before
//! anything starts. A transform that fails on an event sends it to the dead-letter
//! topic with the reason. Webhook sources' VRL mappings (`remap.rs`) share the same
//! compiled-program type (`program.rs`). Pure: functions on events, no IO.

mod chain;
mod condition;
mod ops;
mod program;
mod remap;
mod sections;

pub use chain::Transform;
pub use condition::Condition;
pub use ops::{TransformConfig, TransformError, Transformed};
pub use program::Program;
pub use remap::Remap;
