//! Sending: requests started within the concurrency limit and the breaker, each answer
//! acted on per event, and the client restarted when it can't start or a request stalls.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;
use switchyard_telemetry::TARGET;

use super::{DestinationActor, Pending, Request};
use crate::destination::breaker::BreakerState;
use crate::destination::config::Ordering;
use crate::destination::delivery::{Answer, DeliveryError};
use crate::destination::kinds;
use crate::destination::queue::Queued;
use crate::destination::retry;
use crate::supervise::{guard, guarded};

/// An event on which the client panicked this many times, sent alone, is dead-lettered.
pub(super) const PANICS_TO_DEAD_LETTER: u32 = 3;
/// How often in-flight requests are checked for a stall.
pub(super) const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Restart backoff: doubling from the first wait up to the last.
const RESTART_FIRST_WAIT: Duration = Duration::from_millis(100);
const RESTART_MAX_WAIT: Duration = Duration::from_secs(60);

impl DestinationActor {
    /// Builds the client; on failure restarts with backoff, the events kept.
    pub(super) fn start_client(&mut self, ctx: &mut Context<Self>) {
        let client = guard(|| match &self.connect {
            Some(connect) => connect(),
            None => kinds::connect(&self.config.kind, &self.egress),
        });
        match client {
            Ok(Ok(client)) => {
                self.client = Some(Rc::from(client));
                self.pump(ctx);
            }
            Ok(Err(error)) => self.restart(ctx, &error),
            Err(panic) => {
                self.stats.panics += 1;
                self.restart(ctx, &format!("the client panicked while starting: {panic}"));
            }
        }
    }

    /// Restarts the delivery side in place: in-flight requests are abandoned and their
    /// events go back to the front of the line, the client is dropped and built again
    /// after a backoff that doubles with each restart until a delivery succeeds. The
    /// queue, retry times and breaker survive, so no event is lost or reordered.
    fn restart(&mut self, ctx: &mut Context<Self>, reason: &str) {
        self.stats.restarts += 1;
        self.restart_streak += 1;
        let wait = RESTART_FIRST_WAIT
            .saturating_mul(2u32.saturating_pow(self.restart_streak - 1))
            .min(RESTART_MAX_WAIT);
        tracing::error!(
            source_id = %self.source_id, destination_id = %self.config.id, %reason,
            restarts = self.stats.restarts, ?wait, "destination restarting"
        );
        for id in self.queue.abandon_in_flight() {
            if let Some(request) = self.requests.remove(&id) {
                ctx.cancel_future(request.handle);
            }
        }
        self.breaker.trial_abandoned();
        self.client = None;
        ctx.run_later(wait, |actor, ctx| {
            if actor.retired.is_none() {
                actor.start_client(ctx);
            }
        });
    }

    /// A request older than `stall_after_secs` has hung (every client has a shorter
    /// timeout): restart.
    pub(super) fn check_stalled(&mut self, ctx: &mut Context<Self>) {
        let limit = Duration::from_secs(self.config.stall_after_secs);
        let stalled = self.requests.values().any(|request| request.since.elapsed() >= limit);
        if stalled && self.retired.is_none() {
            self.stats.stalls += 1;
            self.restart(ctx, &format!("a request got no answer within {limit:?}"));
        }
    }

    /// Moves due retries to the front of the line and starts as many requests as the
    /// concurrency limit and the breaker allow.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.queue.promote_due(now);
        let Some(client) = self.client.clone() else {
            self.relieve();
            return;
        };
        let batching = client.batching();
        self.linger_until = None;
        while self.queue.requests() < self.config.concurrency && self.queue.ready() > 0 {
            if let Some(until) = self.queue.lingering(&batching, now) {
                self.linger_until = Some(until);
                break;
            }
            if !self.breaker.try_acquire(now) {
                break;
            }
            let Some((id, batch)) = self.queue.start(&batching) else {
                // Every ready event's user has one out (per-user ordering).
                self.breaker.trial_abandoned();
                break;
            };
            let events: Vec<Arc<Event>> = batch.iter().map(|pending| pending.event.clone()).collect();
            let span = tracing::info_span!(
                target: TARGET, "deliver",
                source_id = %self.source_id,
                destination_id = %self.config.id,
                events = batch.len(),
                attempt = batch.first().map_or(1, |p| p.attempts + 1),
                outcome = tracing::field::Empty,
            );
            if let Some(parent) = batch.first().and_then(|p| p.trace) {
                switchyard_telemetry::set_parent(&span, parent);
            }
            // The client meets vendors' answers and tenants' events: a panic building the
            // request or in any poll of it is this request's failure, not the actor's.
            let source_id: Arc<str> = Arc::from(self.source_id.as_str());
            let request: LocalBoxFuture<'static, Result<Answer, String>> =
                match guard(|| client.deliver(source_id, events)) {
                    Ok(request) => Box::pin(guarded(request)),
                    Err(panic) => Box::pin(futures::future::ready(Err(panic))),
                };
            let handle = ctx.spawn(
                request
                    .into_actor(self)
                    .map(move |answer, actor, ctx| actor.finished(id, answer, ctx)),
            );
            let request = Request {
                handle,
                since: now,
                span,
            };
            self.requests.insert(id, request);
        }
        self.relieve();
        self.schedule_wakeup(ctx, now);
    }

    /// One timer for the earliest moment something can move again.
    fn schedule_wakeup(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let reopen = if self.queue.ready() == 0 {
            None
        } else {
            self.breaker.reopens_at()
        };
        let Some(at) = [self.queue.next_retry(), reopen, self.linger_until]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        if let Some((scheduled, handle)) = self.wakeup {
            if scheduled <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at.saturating_duration_since(now), |actor, ctx| {
            actor.wakeup = None;
            actor.pump(ctx);
        });
        self.wakeup = Some((at, handle));
    }

    fn finished(&mut self, id: u64, answer: Result<Answer, String>, ctx: &mut Context<Self>) {
        let (Some(Request { span, .. }), Some(batch)) = (self.requests.remove(&id), self.queue.finish(id)) else {
            return;
        };
        let outcome = match answer {
            Ok(answer) => answer,
            Err(panic) => {
                span.record("outcome", "panicked");
                return self.panicked(batch, panic, ctx);
            }
        };
        span.record(
            "outcome",
            match &outcome {
                Answer::Delivered => "delivered",
                Answer::Failed(error) if error.retryable => "retry",
                Answer::Failed(_) => "refused",
                Answer::Partial(_) => "partial",
            },
        );
        self.last_progress = Instant::now();
        if self.retired.is_some() {
            let mut failed = failed_indexes(&outcome, batch.len());
            for (index, pending) in batch.into_iter().enumerate() {
                if failed.next_if_eq(&index).is_some() {
                    self.hand_on(pending);
                } else {
                    pending.ack.done();
                }
            }
            if self.queue.in_flight() == 0 {
                ctx.stop();
            }
            return;
        }
        match outcome {
            Answer::Delivered => {
                self.restart_streak = 0;
                self.breaker.success();
                self.delivered(batch);
            }
            Answer::Failed(error) if error.retryable => {
                self.breaker.failure(Instant::now());
                self.note_error(&error, &batch);
                tracing::warn!(
                    source_id = %self.source_id, destination_id = %self.config.id,
                    reason = %error.reason, events = batch.len(), "delivery failed, will retry"
                );
                self.retry(batch, &error);
            }
            Answer::Failed(error) => {
                // The destination answered, so it is up: a refusal is about the events.
                self.breaker.success();
                self.note_error(&error, &batch);
                for pending in batch {
                    self.refused(pending, &error);
                }
            }
            Answer::Partial(failures) => {
                self.restart_streak = 0;
                self.breaker.success();
                self.partial(batch, failures);
            }
        }
        self.pump(ctx);
    }

    /// The client panicked on this request: it is rebuilt (with the restart backoff), the
    /// events go back in line, each alone from now on so that one that breaks the client
    /// is told from the others, and one that has broken it alone [`PANICS_TO_DEAD_LETTER`]
    /// times is dead-lettered with the panic's message.
    fn panicked(&mut self, batch: Vec<Pending>, panic: String, ctx: &mut Context<Self>) {
        self.stats.panics += 1;
        let error = DeliveryError::retryable(format!("the destination's client panicked: {panic}"));
        self.note_error(&error, &batch);
        let alone = batch.len() == 1;
        let mut again = Vec::with_capacity(batch.len());
        for mut pending in batch {
            pending.suspect = true;
            if alone {
                pending.panics += 1;
            }
            if pending.panics >= PANICS_TO_DEAD_LETTER {
                pending.attempts += 1;
                let reason = format!(
                    "the destination's client panicked on this event {} times: {panic}",
                    pending.panics
                );
                self.dead_letter(pending, reason);
            } else {
                again.push(pending);
            }
        }
        self.queue.retry_at(again, Instant::now());
        if self.retired.is_some() {
            for pending in self.queue.drain_waiting() {
                self.hand_on(pending);
            }
            if self.queue.in_flight() == 0 {
                ctx.stop();
            }
            return;
        }
        self.restart(ctx, &error.reason);
    }

    fn delivered(&mut self, batch: Vec<Pending>) {
        self.stats.delivered += batch.len() as u64;
        for pending in batch {
            self.latency
                .observe(pending.first_seen.elapsed().unwrap_or_default().as_secs_f64());
            self.queue.done(&pending);
            pending.ack.done();
        }
    }

    /// Some events arrived: the rest are retried together (after the longest wait any
    /// of them was given) or dead-lettered, each with its own reason.
    fn partial(&mut self, batch: Vec<Pending>, mut failures: Vec<(usize, DeliveryError)>) {
        failures.sort_by_key(|(index, _)| *index);
        failures.dedup_by_key(|(index, _)| *index);
        let mut failures = failures.into_iter().peekable();
        let mut delivered = Vec::new();
        let mut retry: Vec<(Pending, DeliveryError)> = Vec::new();
        for (index, pending) in batch.into_iter().enumerate() {
            match failures.next_if(|(at, _)| *at == index) {
                None => delivered.push(pending),
                Some((_, error)) if error.retryable => retry.push((pending, error)),
                Some((_, error)) => {
                    self.note_error(&error, std::slice::from_ref(&pending));
                    self.refused(pending, &error);
                }
            }
        }
        tracing::warn!(
            source_id = %self.source_id, destination_id = %self.config.id,
            delivered = delivered.len(), retried = retry.len(), "delivery partly failed"
        );
        self.delivered(delivered);
        let per_user = self.config.ordering == Ordering::PerUser;
        for (error, events) in by_wait(retry, per_user) {
            self.note_error(&error, &events);
            self.retry(events, &error);
        }
    }

    /// One retry time for the events of one request: they come back together and in
    /// their order, which per-user ordering relies on. An event past its retry window
    /// is dead-lettered instead.
    fn retry(&mut self, batch: Vec<Pending>, error: &DeliveryError) {
        let window = Duration::from_secs(self.config.retry.retry_window_secs);
        let attempts = batch.iter().map(|p| p.attempts + 1).max().unwrap_or(1);
        let at = Instant::now() + retry::delay(&self.config.retry, attempts, error.retry_after);
        let mut waiting = Vec::with_capacity(batch.len());
        for mut pending in batch {
            pending.attempts += 1;
            pending.last_error = Some(error.reason.clone());
            if pending.first_seen.elapsed().unwrap_or_default() >= window {
                let reason = format!("retry window of {window:?} ran out; last error: {}", error.reason);
                self.dead_letter(pending, reason);
                continue;
            }
            self.stats.retried += 1;
            waiting.push(pending);
        }
        self.queue.retry_at(waiting, at);
    }

    fn refused(&mut self, mut pending: Pending, error: &DeliveryError) {
        pending.attempts += 1;
        self.dead_letter(pending, error.reason.clone());
    }

    fn note_error(&mut self, error: &DeliveryError, batch: &[Pending]) {
        self.stats.last_error = Some(error.reason.clone());
        let first = batch.first().and_then(|p| p.event.message_id());
        self.stats.recent_errors.push(&error.reason, first, batch.len());
    }

    /// Whether the breaker is open now (for parking and the operator's view).
    pub(super) fn breaker_open(&self) -> bool {
        matches!(self.breaker.state(), BreakerState::Open { .. })
    }
}

/// Retried events grouped by the wait they were given, each group in the batch's
/// order, so that a throttled user's events wait without holding back the others
/// (a vendor that throttles per user, as Amplitude does). Under per-user ordering all
/// of a user's events take the longest wait any of them got: none overtakes another.
fn by_wait(retry: Vec<(Pending, DeliveryError)>, per_user: bool) -> Vec<(DeliveryError, Vec<Pending>)> {
    let mut longest: HashMap<String, Duration> = HashMap::new();
    if per_user {
        for (pending, error) in &retry {
            if let Some(wait) = error.retry_after {
                let user = longest.entry(pending.user().to_string()).or_default();
                *user = (*user).max(wait);
            }
        }
    }
    let mut groups: Vec<(DeliveryError, Vec<Pending>)> = Vec::new();
    for (pending, mut error) in retry {
        if let Some(wait) = longest.get(pending.user()) {
            error.retry_after = Some(*wait);
        }
        match groups
            .iter_mut()
            .find(|(first, _)| first.retry_after == error.retry_after)
        {
            Some((_, events)) => events.push(pending),
            None => groups.push((error, vec![pending])),
        }
    }
    groups
}

/// The indexes of the events of a batch that did not arrive, in order.
fn failed_indexes(outcome: &Answer, len: usize) -> std::iter::Peekable<std::vec::IntoIter<usize>> {
    let mut failed: Vec<usize> = match outcome {
        Answer::Delivered => Vec::new(),
        Answer::Failed(_) => (0..len).collect(),
        Answer::Partial(failures) => failures.iter().map(|(index, _)| *index).collect(),
    };
    failed.sort_unstable();
    failed.dedup();
    failed.into_iter().peekable()
}
