//! Parking: a destination whose buffer is full hands further events to the retry topic
//! instead of making its source wait, so one slow or failing destination never holds
//! back the others or the partition. The router reads the retry topic and brings each
//! event back to the same destination once its `not_before` time has come; its share
//! of the original record is done as soon as Kafka has the parked copy.

use std::time::{Duration, SystemTime};

use actix::prelude::*;

use crate::ack::Ack;

/// What an event carries through the retry topic, so retries and the retry window go
/// on where they stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Times it was parked before, which spaces out its returns.
    pub parks: u32,
    /// When the destination first took it; the retry window counts from here.
    pub first_seen: SystemTime,
    pub last_error: Option<String>,
}

impl Parked {
    /// How long ago the destination first took it, as an `Instant` offset.
    pub fn age(&self) -> Duration {
        SystemTime::now().duration_since(self.first_seen).unwrap_or_default()
    }
}

/// An event on its way to the retry topic.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Park {
    pub source_id: String,
    pub destination_id: String,
    /// The event's JSON as the destination would send it (its transforms applied).
    pub value: Vec<u8>,
    pub message_id: Option<String>,
    pub state: Parked,
    /// Not to be offered to the destination again before this.
    pub not_before: SystemTime,
    pub ack: Ack,
}
