//! What a destination actor shows an operator: its counters, its state, and the
//! latency histogram the metrics export.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;

use crate::samples::RecentErrors;

/// Counters and state an operator can read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationStats {
    /// The destination's `kind`, a metrics label.
    pub kind: &'static str,
    pub received: u64,
    pub delivered: u64,
    pub retried: u64,
    /// By a transform, the event's `integrations` or its consent (the two below).
    pub filtered: u64,
    /// Of `filtered`: the event's `integrations` object turned this destination off.
    pub filtered_integrations: u64,
    /// Of `filtered`: the event did not grant a consent category this destination needs.
    pub filtered_consent: u64,
    pub dead_lettered: u64,
    /// Handed to the retry topic: the destination was failing and its budget spent.
    pub parked: u64,
    /// Times the client was restarted: it could not start, or a request stalled.
    pub restarts: u64,
    /// Requests abandoned for getting no answer within `stall_after_secs`.
    pub stalls: u64,
    /// Panics of its client or transforms, caught at the actor's boundary.
    pub panics: u64,
    pub buffered: usize,
    /// Handed over and still in the mailbox (they hold room in its budget).
    pub queued: usize,
    pub in_flight: usize,
    pub circuit_open: bool,
    pub last_error: Option<String>,
    pub state: ActorState,
    pub recent_errors: RecentErrors,
    /// Milliseconds since a request last finished, or since the buffer was last empty.
    pub since_progress_ms: u64,
}

/// What a destination is doing, for an operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    #[default]
    Running,
    /// Every buffered event is waiting for its retry time.
    BackingOff,
    CircuitOpen,
    /// The client is being rebuilt after a stall or a failed start.
    Restarting,
    /// Retired: finishing in-flight requests before it stops.
    Stopping,
}

impl ActorState {
    /// The name `/actors` and the metrics use (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            ActorState::Running => "running",
            ActorState::BackingOff => "backing_off",
            ActorState::CircuitOpen => "circuit_open",
            ActorState::Restarting => "restarting",
            ActorState::Stopping => "stopping",
        }
    }
}

/// A delivery latency histogram, in seconds: 1 ms doubling to about 4.5 hours, so a
/// delivery at the end of the default 4-hour retry window still lands in a bucket.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}
