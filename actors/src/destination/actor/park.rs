//! Parking: a failing destination with its budget spent hands the events that would
//! wait anyway to the retry topic, so its source goes on; a destination that is only
//! slow parks nothing (its spent budget is what paces its source).

use std::time::{Duration, Instant, SystemTime};

use super::{DestinationActor, Pending};
use crate::destination::retry;
use crate::park::{Park, Parked};

/// A parked event stays away at least this long, so a full buffer has time to drain.
pub(super) const PARK_MIN_WAIT: Duration = Duration::from_secs(1);
/// A failing destination with its budget spent parks until this share of the budget
/// is free again, so its source moves on in steps rather than event by event.
const PARK_TO_FREE: usize = 4;
/// The longest a parked event of a failing destination stays away at a time.
pub(super) const PARK_MAX_WAIT: Duration = Duration::from_secs(300);

/// How long an event parked by a failing destination stays away: its retry delay, no
/// sooner than the breaker lets a request through, and doubling with each park from
/// [`PARK_MIN_WAIT`] up to [`PARK_MAX_WAIT`] while the destination keeps failing. An
/// event back sooner is only parked again: measured in a one-minute outage of 100,000
/// events, 240,000 parks with the breaker's 5 s cooldown alone, 1,068,339 with the
/// cooldown and a 5 s backoff cap (the retry topic carrying ten copies of each event).
pub(super) fn park_wait(parks: u32, retry: Duration, breaker_reopens_in: Duration) -> Duration {
    let doubling = PARK_MIN_WAIT.saturating_mul(2u32.saturating_pow(parks.min(16)));
    retry.max(breaker_reopens_in).max(doubling.min(PARK_MAX_WAIT))
}

impl DestinationActor {
    /// A failing destination (its breaker open, or events waiting for a retry) whose
    /// budget is spent parks what would wait anyway, the events due last first, until a
    /// share of its budget is free: its source goes on, and the parked events come back
    /// from the retry topic when due.
    pub(super) fn relieve(&mut self) {
        if self.parking.is_none() || self.retired.is_some() || self.budget.available() > 0 {
            return;
        }
        let open = self.breaker_open() || self.client.is_none();
        let now = Instant::now();
        for _ in 0..(self.config.max_buffered_events / PARK_TO_FREE).max(1) {
            if let Some((due, pending)) = self.queue.pop_latest_retry() {
                self.park(pending, due.saturating_duration_since(now));
            } else if open && let Some(pending) = self.queue.pop_last_ready() {
                let reopens = self.breaker.reopens_at().map(|at| at.saturating_duration_since(now));
                let retry = retry::delay(&self.config.retry, pending.parks + 1, None);
                let wait = park_wait(pending.parks, retry, reopens.unwrap_or_default());
                self.park(pending, wait);
            } else {
                break;
            }
        }
    }

    fn park(&mut self, pending: Pending, wait: Duration) {
        let Some(parking) = self.parking.clone() else {
            return;
        };
        self.stats.parked += 1;
        let wait = wait.max(PARK_MIN_WAIT);
        tracing::debug!(
            source_id = %self.source_id, destination_id = %self.config.id,
            message_id = pending.message_id(), ?wait, "destination failing, event parked"
        );
        let park = Park {
            source_id: self.source_id.clone(),
            destination_id: self.config.id.clone(),
            value: serde_json::to_vec(pending.event.as_ref()).unwrap_or_default(),
            message_id: pending.event.message_id().map(str::to_string),
            state: Parked {
                attempts: pending.attempts,
                parks: pending.parks + 1,
                first_seen: pending.first_seen,
                last_error: pending.last_error,
            },
            not_before: SystemTime::now() + wait,
            ack: pending.ack,
        };
        // The writer finishes the share once Kafka has the parked copy; if it is gone
        // the share is dropped unfinished and the record is redelivered. The event's
        // permit is released here: the room is the source's again.
        let send = parking.send(park);
        actix::spawn(async move {
            if let Err(error) = send.await {
                tracing::error!(%error, "retry topic writer unavailable; the record will be redelivered");
            }
        });
    }
}
