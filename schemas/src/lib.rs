//! Switchyard's event model: the Segment spec as serde types, the limits and validation
//! rules applied at the edge, server-side enrichment, and the Kafka record format that
//! ingest writes and external producers may write too.
//!
//! This crate is pure: no IO, no clocks except where a caller passes them in.

mod de;
pub mod enrich;
pub mod event;
mod ids;
pub mod parse;
pub mod raw;
pub mod record;
pub mod trace;
pub mod validate;

pub use enrich::{EnrichContext, enrich};
pub use event::{Alias, Common, Event, EventType, Group, Identify, Page, Screen, Track};
pub use parse::{ParseError, ParsedRequest, parse_batch, parse_single};
pub use raw::RawObject;
pub use record::{RecordHeaders, record_key};
pub use validate::{Limits, ValidationError, validate};
