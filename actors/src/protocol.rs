//! The messages of the event path and the capacity that travels with them.
//!
//! ```text
//! consumer ──InboundBatch(records, permit of the source's budget)──▶ SourceSupervisor
//! SourceSupervisor ──RoutedBatch(events, one permit each of the target's budget)──▶
//!     DestinationActor | ArchiveActor | LogDestination
//! consumer (retry topic) ──Routed(event, permit of the destination's budget)──▶ DestinationActor
//! DestinationActor ──Park──▶ retry-topic writer     ──DeadLetter──▶ dead-letter writer
//! ```
//!
//! Every record carries an [`Ack`] share per target (its offset is committed when all
//! are done). Flow control is the [`Budget`]: an actor's budget is how many events it
//! may hold, in its mailbox and its buffers together. A sender *awaits* a [`Permit`]
//! before it hands events over, and the permit travels with the events, released
//! when the events are finished (delivered, filtered, dead-lettered or parked). So a
//! slow actor slows its senders down to its own pace, and nothing polls or counts
//! across actors: the permits are the count.

use std::sync::Arc;

use actix::prelude::*;
use switchyard_schemas::Event;
use switchyard_schemas::record::RecordHeaders;
use switchyard_schemas::trace::Traceparent;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ack::Ack;
use crate::park::Parked;

/// How many events an actor may hold at once, shared with everyone who sends to it.
#[derive(Debug, Clone)]
pub struct Budget {
    /// `None`: unbounded (a log or a tool that paces itself).
    permits: Option<Arc<Semaphore>>,
    capacity: usize,
}

impl Budget {
    pub fn new(capacity: usize) -> Budget {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Budget {
            permits: Some(Arc::new(Semaphore::new(capacity))),
            capacity,
        }
    }

    /// A budget that never makes anyone wait.
    pub fn unbounded() -> Budget {
        Budget {
            permits: None,
            capacity: usize::MAX,
        }
    }

    /// The most events it holds: `usize::MAX` when unbounded.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events holding a permit now (in a mailbox, a buffer or a request).
    pub fn held(&self) -> usize {
        self.permits
            .as_ref()
            .map_or(0, |permits| self.capacity.saturating_sub(permits.available_permits()))
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.permits
            .as_ref()
            .map_or(usize::MAX, |permits| permits.available_permits())
    }

    /// Room for up to `events` events: waits until there is room for one, then takes
    /// as much as is free, so a sender hands over what fits and waits again for the
    /// rest. The wait is the backpressure. Unbounded: room for all at once.
    pub async fn take(&self, events: usize) -> Permit {
        let Some(permits) = &self.permits else {
            return Permit(None);
        };
        // The semaphore is never closed; were it, the events would go uncounted.
        let Ok(mut permit) = permits.clone().acquire_owned().await else {
            return Permit(None);
        };
        let more = events.saturating_sub(1).min(permits.available_permits());
        if more > 0
            && let Ok(extra) = permits.clone().try_acquire_many_owned(more as u32)
        {
            permit.merge(extra);
        }
        Permit(Some(permit))
    }

    /// `events` permits if they are free now.
    pub fn try_take(&self, events: usize) -> Option<Permit> {
        let Some(permits) = &self.permits else {
            return Some(Permit(None));
        };
        if events > self.capacity {
            return None;
        }
        permits
            .clone()
            .try_acquire_many_owned(events as u32)
            .ok()
            .map(Some)
            .map(Permit)
    }
}

/// Room in an actor's budget for some events; released when dropped.
#[derive(Debug, Default)]
pub struct Permit(Option<OwnedSemaphorePermit>);

impl Permit {
    /// Counts against no budget (tests, tools, events moved to a replacement actor).
    pub fn none() -> Permit {
        Permit(None)
    }

    /// How many events this permit holds room for.
    pub fn count(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// One event's part of this permit (an empty one when none is left).
    pub fn split_one(&mut self) -> Permit {
        Permit(self.0.as_mut().and_then(|permit| permit.split(1)))
    }

    /// Adds `other`'s room to this one (permits of the same budget).
    pub fn merge(&mut self, other: Permit) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) if Arc::ptr_eq(mine.semaphore(), theirs.semaphore()) => mine.merge(theirs),
            (None, theirs) => self.0 = theirs,
            // Of another budget: released now rather than mixed in.
            _ => {}
        }
    }
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "routed",
            Outcome::Duplicate => "duplicate",
            Outcome::Suppressed => "suppressed",
            Outcome::Filtered => "filtered",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// What became of one inbound record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        destinations: usize,
    },
    Duplicate,
    /// Dropped: its user's archive was deleted and the user is on the suppression list.
    Suppressed,
    /// Dropped on purpose by a transform (a condition or sampling).
    Filtered,
    Rejected {
        reason: String,
    },
}

/// A record of one source as read from Kafka.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Inbound {
    pub headers: RecordHeaders,
    pub value: Vec<u8>,
    pub ack: Ack,
}

/// Consecutive records of one partition for one source, with their room in the
/// source's budget: one wakeup of the supervisor's thread for many records.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Outcome>")]
pub struct InboundBatch {
    pub records: Vec<Inbound>,
    pub permit: Permit,
}

impl InboundBatch {
    /// Records counted against no budget (tests, tools).
    pub fn unbudgeted(records: Vec<Inbound>) -> InboundBatch {
        InboundBatch {
            records,
            permit: Permit::none(),
        }
    }
}

/// Events for one target, in order, handed over in one message.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RoutedBatch(pub Vec<Routed>);

/// A decoded, validated event on its way to one target, with that target's share of
/// the record and its room in the target's budget.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Routed {
    pub source_id: Arc<str>,
    pub event: Arc<Event>,
    pub ack: Ack,
    /// Set when the event comes back from the retry topic: its transforms are done and
    /// its retry state goes on.
    pub parked: Option<Parked>,
    /// The trace this event belongs to; its delivery spans continue it.
    pub trace: Option<Traceparent>,
    pub permit: Permit,
}

/// One target of a source, as its supervisor sees it.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination_id: String,
    pub recipient: Recipient<RoutedBatch>,
    pub budget: Budget,
}

/// How the consumer reaches a supervisor: its address and its budget.
#[derive(Debug)]
pub struct SupervisorHandle {
    pub recipient: Recipient<InboundBatch>,
    pub budget: Budget,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_sender_waits_for_room_and_the_room_comes_back_when_the_events_are_done() {
        let budget = Budget::new(3);
        let mut permit = budget.take(3).await;
        assert_eq!((permit.count(), budget.held(), budget.available()), (3, 3, 0));
        assert!(budget.try_take(1).is_none(), "a full budget has no room");
        let one = permit.split_one();
        assert_eq!((one.count(), permit.count()), (1, 2));

        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(2).await.count() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room yet");
        drop(one);
        assert_eq!(waiting.await.expect("joins"), 1, "room for one is taken at once");
        assert_eq!(budget.held(), 2, "the waiter's permit went with it");
        drop(permit);
        assert_eq!(budget.held(), 0, "every permit came back");
    }

    #[tokio::test]
    async fn a_take_larger_than_the_room_takes_the_room_and_merging_keeps_the_count() {
        let budget = Budget::new(2);
        assert!(budget.try_take(3).is_none());
        let mut whole = budget.take(5).await;
        assert_eq!(whole.count(), 2);
        let part = whole.split_one();
        let mut merged = Permit::none();
        merged.merge(part);
        merged.merge(whole);
        assert_eq!((merged.count(), budget.held()), (2, 2));
        drop(merged);
        assert_eq!(budget.held(), 0);
        assert_eq!(Budget::unbounded().try_take(1_000_000).map(|p| p.count()), Some(0));
    }
}
