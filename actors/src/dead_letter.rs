//! What the actors hand over when an event can't be delivered: it goes to the
//! dead-letter topic with the reason, and only then is its share of the record done.

use actix::prelude::*;

use crate::ack::Ack;

/// Where in the pipeline the event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Refused by validation (a record from an external producer).
    Validate,
    /// A transform failed on it.
    Transform,
    /// A destination refused it (4xx) or the retry window ran out.
    Deliver,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Transform => "transform",
            Stage::Deliver => "deliver",
        }
    }
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeadLetter {
    pub source_id: String,
    pub destination_id: Option<String>,
    pub stage: Stage,
    pub reason: String,
    pub attempts: u32,
    /// The event's JSON as it was when given up on.
    pub value: Vec<u8>,
    pub message_id: Option<String>,
    pub ack: Ack,
}
