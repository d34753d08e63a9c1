//! `DestinationActor`: one per (source, destination). It buffers the events it is
//! given, sends them with bounded concurrency, retries failures with backoff behind a
//! circuit breaker, and dead-letters what can't be delivered. Nothing it does waits on
//! another destination, and nothing another destination does waits on it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;
use switchyard_schemas::Event;

use super::breaker::{Breaker, BreakerState};
use super::client::Client;
use super::config::{DestinationConfig, DestinationKind, EgressPolicy, Ordering};
use super::gate::{Gate, Skip};
use super::retry;
use super::webhook::DeliveryError;
use crate::ack::Ack;
use crate::dead_letter::{DeadLetter, Stage};
use crate::park::{Park, Parked};
use crate::protocol::{Budget, Permit, Routed, RoutedBatch};
use crate::samples::RecentErrors;
use crate::transform::{Transform, Transformed};
use switchyard_schemas::trace::Traceparent;
use switchyard_telemetry::TARGET;

struct Pending {
    event: Arc<Event>,
    ack: Ack,
    /// Wall-clock, because it travels through the retry topic.
    first_seen: SystemTime,
    attempts: u32,
    parks: u32,
    last_error: Option<String>,
    trace: Option<Traceparent>,
    /// Its room in this destination's budget, released when the event is finished.
    permit: Permit,
}

impl Pending {
    /// An event just taken from the supervisor (not yet attempted), or back from the
    /// retry topic with its retry state.
    fn new(message: Routed) -> Self {
        let parked = message.parked.unwrap_or(Parked {
            attempts: 0,
            parks: 0,
            first_seen: SystemTime::now(),
            last_error: None,
        });
        Pending {
            event: message.event,
            ack: message.ack,
            first_seen: parked.first_seen,
            attempts: parked.attempts,
            parks: parked.parks,
            last_error: parked.last_error,
            trace: message.trace,
            permit: message.permit,
        }
    }
}

/// Counters and state an operator can read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationStats {
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

#[derive(Debug, Message)]
#[rtype(result = "DestinationStats")]
pub struct GetDestinationStats;

/// The destination left the configuration (`forward_to` is `None`: its buffered events
/// are finished, no longer wanted) or was replaced (they move to the replacement).
/// In-flight requests complete first; then the actor stops.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire {
    pub forward_to: Option<Recipient<Routed>>,
}

/// A delivery latency histogram, in seconds: 1 ms doubling to about 4.5 hours, so a
/// delivery at the end of the default 4-hour retry window still lands in a bucket.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}

/// How often in-flight requests are checked for a stall.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Restart backoff: doubling from the first wait up to the last.
const RESTART_FIRST_WAIT: Duration = Duration::from_millis(100);
const RESTART_MAX_WAIT: Duration = Duration::from_secs(60);

/// A request on its way, with the events it carries so a restart can send them again.
struct Request {
    batch: Vec<Pending>,
    handle: SpawnHandle,
    since: Instant,
    /// One delivery attempt, a child of the first event's trace; closed when it ends.
    span: tracing::Span,
}

/// A parked event stays away at least this long, so a full buffer has time to drain.
const PARK_MIN_WAIT: Duration = Duration::from_secs(1);
/// A failing destination with its budget spent parks until this share of the budget
/// is free again, so its source moves on in steps rather than event by event.
const PARK_TO_FREE: usize = 4;
/// The longest a parked event of a failing destination stays away at a time.
const PARK_MAX_WAIT: Duration = Duration::from_secs(300);

/// How long an event parked by a failing destination stays away: its retry delay, no
/// sooner than the breaker lets a request through, and doubling with each park from
/// [`PARK_MIN_WAIT`] up to [`PARK_MAX_WAIT`] while the destination keeps failing. An
/// event back sooner is only parked again: measured in a one-minute outage of 100,000
/// events, 240,000 parks with the breaker's 5 s cooldown alone, 1,068,339 with the
/// cooldown and a 5 s backoff cap (the retry topic carrying ten copies of each event).
fn park_wait(parks: u32, retry: Duration, breaker_reopens_in: Duration) -> Duration {
    let doubling = PARK_MIN_WAIT.saturating_mul(2u32.saturating_pow(parks.min(16)));
    retry.max(breaker_reopens_in).max(doubling.min(PARK_MAX_WAIT))
}

pub struct DestinationActor {
    source_id: String,
    /// Shared by every source's actor of this destination: one copy, however many sources.
    config: Arc<DestinationConfig>,
    /// The operator's egress policy; the client checks each connection against it.
    egress: Arc<EgressPolicy>,
    client: Option<Client>,
    dead_letters: Recipient<DeadLetter>,
    /// The retry topic, when there is one; without it a failing destination holds its
    /// source back like a slow one.
    parking: Option<Recipient<Park>>,
    /// What its senders take room from: every event it holds has a permit of it.
    budget: Budget,
    /// The destination's `integrations` and consent rules; `None` lets everything through.
    gate: Option<Gate>,
    transform: Transform,
    ready: VecDeque<Pending>,
    /// Events waiting for their retry time; the sequence number keeps equal times apart.
    delayed: BTreeMap<(Instant, u64), Pending>,
    sequence: u64,
    /// Events in `requests`.
    in_flight: usize,
    requests: HashMap<u64, Request>,
    next_request: u64,
    /// Restarts since the last delivery, for the backoff.
    restart_streak: u32,
    /// Seconds from taking an event to its delivery, shared with whoever exports metrics.
    latency: Histogram,
    last_progress: Instant,
    /// With per-user ordering: events in flight or waiting for a retry, per user.
    busy_users: HashMap<String, usize>,
    breaker: Breaker,
    wakeup: Option<(Instant, SpawnHandle)>,
    /// A batch destination waiting for a fuller batch sends no later than this.
    linger_until: Option<Instant>,
    /// Set once retired: where events go now (`None`: finished, not delivered).
    retired: Option<Option<Recipient<Routed>>>,
    stats: DestinationStats,
}

impl std::fmt::Debug for DestinationActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationActor")
            .field("source_id", &self.source_id)
            .field("destination_id", &self.config.id)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DestinationActor {
    /// `budget` is the one its senders take room from before they hand events over.
    pub fn new(
        source_id: &str,
        config: impl Into<Arc<DestinationConfig>>,
        dead_letters: Recipient<DeadLetter>,
        budget: Budget,
        egress: Arc<EgressPolicy>,
    ) -> Self {
        let config = config.into();
        let breaker = Breaker::new(
            config.breaker_failures,
            Duration::from_millis(config.breaker_cooldown_ms),
        );
        let gate = Some(Gate::new(&config)).filter(|gate| !gate.is_open());
        DestinationActor {
            source_id: source_id.to_string(),
            gate,
            config,
            egress,
            client: None,
            dead_letters,
            parking: None,
            budget,
            transform: Transform::default(),
            ready: VecDeque::new(),
            delayed: BTreeMap::new(),
            sequence: 0,
            in_flight: 0,
            requests: HashMap::new(),
            next_request: 0,
            restart_streak: 0,
            latency: latency_histogram(),
            last_progress: Instant::now(),
            busy_users: HashMap::new(),
            breaker,
            wakeup: None,
            linger_until: None,
            retired: None,
            stats: DestinationStats::default(),
        }
    }

    /// Records delivery latencies into `latency` (the exporter's copy of the same histogram).
    pub fn with_latency(mut self, latency: Histogram) -> Self {
        self.latency = latency;
        self
    }

    fn state(&self) -> ActorState {
        if self.retired.is_some() {
            ActorState::Stopping
        } else if self.client.is_none() && !matches!(self.config.kind, DestinationKind::Blackhole(_)) {
            ActorState::Restarting
        } else if matches!(self.breaker.state(), BreakerState::Open { .. }) {
            ActorState::CircuitOpen
        } else if !self.delayed.is_empty() && self.ready.is_empty() && self.in_flight == 0 {
            ActorState::BackingOff
        } else {
            ActorState::Running
        }
    }

    /// This destination's own transforms, applied before buffering.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = transform;
        self
    }

    /// A failing destination parks what it can't hold in the retry topic instead of
    /// holding its source back. Not with per-user ordering: a parked event could come
    /// back after a later one of its user.
    pub fn with_parking(mut self, parking: Recipient<Park>) -> Self {
        if self.config.ordering == Ordering::None {
            self.parking = Some(parking);
        }
        self
    }

    /// Whether a failing destination parks events rather than making the source wait.
    pub fn parks(config: &DestinationConfig, retry_topic: bool) -> bool {
        retry_topic && config.ordering == Ordering::None
    }

    /// A failing destination (its breaker open, or events waiting for a retry) whose
    /// budget is spent parks what would wait anyway, the events due last first, until a
    /// share of its budget is free: its source goes on, and the parked events come back
    /// from the retry topic when due. A destination that is only slow parks nothing:
    /// its spent budget is what paces its source.
    fn relieve(&mut self) {
        if self.parking.is_none() || self.retired.is_some() || self.budget.available() > 0 {
            return;
        }
        let open = matches!(self.breaker.state(), BreakerState::Open { .. }) || self.client.is_none();
        let now = Instant::now();
        for _ in 0..(self.config.max_buffered_events / PARK_TO_FREE).max(1) {
            if let Some(entry) = self.delayed.last_entry() {
                let (due, _) = *entry.key();
                let pending = entry.remove();
                self.park(pending, due.saturating_duration_since(now));
            } else if open && let Some(pending) = self.ready.pop_back() {
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
            message_id = pending.event.message_id().unwrap_or_default(), ?wait, "destination failing, event parked"
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

    /// Builds the client; on failure restarts with backoff, the events kept buffered.
    fn start_client(&mut self, ctx: &mut Context<Self>) {
        match Client::new(&self.config.kind, &self.egress) {
            Ok(client) => {
                self.client = client;
                self.pump(ctx);
            }
            Err(error) => self.restart(ctx, &error),
        }
    }

    /// Restarts the delivery side in place: in-flight requests are abandoned and their
    /// events go back to the front of the line, the client is dropped and built again
    /// after a backoff that doubles with each restart until a delivery succeeds. The
    /// buffer, retry timers and breaker survive, so no event is lost or reordered.
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
        let mut requests: Vec<(u64, Request)> = self.requests.drain().collect();
        requests.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (_, request) in requests {
            ctx.cancel_future(request.handle);
            self.in_flight -= request.batch.len();
            for pending in request.batch.into_iter().rev() {
                self.release_user(&pending);
                self.ready.push_front(pending);
            }
        }
        self.client = None;
        ctx.run_later(wait, |actor, ctx| {
            if actor.retired.is_none() {
                actor.start_client(ctx);
            }
        });
    }

    /// A request older than `stall_after_secs` has hung (every client has a shorter
    /// timeout): restart.
    fn check_stalled(&mut self, ctx: &mut Context<Self>) {
        let limit = Duration::from_secs(self.config.stall_after_secs);
        let stalled = self.requests.values().any(|request| request.since.elapsed() >= limit);
        if stalled && self.retired.is_none() {
            self.stats.stalls += 1;
            self.restart(ctx, &format!("a request got no answer within {limit:?}"));
        }
    }

    fn buffered(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.in_flight
    }

    /// Moves due retries to the front of the line and starts as many requests as the
    /// concurrency limit and the breaker allow.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let due: Vec<(Instant, u64)> = self.delayed.range(..=(now, u64::MAX)).map(|(key, _)| *key).collect();
        for key in due.into_iter().rev() {
            if let Some(pending) = self.delayed.remove(&key) {
                // Back at the front of the line: the user's first event again.
                self.release_user(&pending);
                self.ready.push_front(pending);
            }
        }
        let Some(client) = self.client.clone() else {
            self.relieve();
            return;
        };
        self.linger_until = None;
        while self.requests.len() < self.config.concurrency && !self.ready.is_empty() {
            if let Some(until) = self.lingering(&client, now) {
                self.linger_until = Some(until);
                break;
            }
            if !self.breaker.try_acquire(now) {
                break;
            }
            let take = client.batch_max_events().min(self.ready.len());
            let batch: Vec<Pending> = match self.config.ordering {
                Ordering::None => self.ready.drain(..take).collect(),
                Ordering::PerUser => self.take_in_user_order(take),
            };
            if batch.is_empty() {
                break;
            }
            let events: Vec<Arc<Event>> = batch.iter().map(|p| p.event.clone()).collect();
            self.in_flight += batch.len();
            let request = client.send(Arc::from(self.source_id.as_str()), events);
            self.next_request += 1;
            let id = self.next_request;
            let handle = ctx.spawn(
                request
                    .into_actor(self)
                    .map(move |result, actor, ctx| actor.finished(id, result, ctx)),
            );
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
            let request = Request {
                batch,
                handle,
                since: now,
                span,
            };
            self.requests.insert(id, request);
        }
        self.relieve();
        self.schedule_wakeup(ctx, now);
        self.stats.buffered = self.buffered();
        self.stats.in_flight = self.in_flight;
        self.stats.circuit_open = matches!(self.breaker.state(), BreakerState::Open { .. });
    }

    /// A batch destination with a partial batch of first attempts waits for more, until
    /// the oldest has waited its linger; returns when to look again.
    fn lingering(&self, client: &Client, now: Instant) -> Option<Instant> {
        let linger = client.batch_linger();
        let first = self.ready.front()?;
        if linger.is_zero() || self.ready.len() >= client.batch_max_events() || first.attempts > 0 {
            return None;
        }
        let waited = first.first_seen.elapsed().unwrap_or_default();
        (waited < linger).then(|| now + (linger - waited))
    }

    fn user_of(pending: &Pending) -> &str {
        pending.event.user_key().unwrap_or_default()
    }

    /// Up to `max` ready events whose users have nothing in flight or waiting, keeping
    /// each user's events in their order; they count as busy until finished.
    fn take_in_user_order(&mut self, max: usize) -> Vec<Pending> {
        let mut taken = Vec::new();
        let mut skipped_users: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::with_capacity(self.ready.len());
        while let Some(pending) = self.ready.pop_front() {
            let user = Self::user_of(&pending);
            let blocked = self.busy_users.contains_key(user) || skipped_users.contains(user);
            if taken.len() < max && !blocked {
                taken.push(pending);
            } else {
                skipped_users.insert(user.to_string());
                kept.push_back(pending);
            }
        }
        self.ready = kept;
        for pending in &taken {
            *self.busy_users.entry(Self::user_of(pending).to_string()).or_default() += 1;
        }
        taken
    }

    fn release_user(&mut self, pending: &Pending) {
        if self.config.ordering != Ordering::PerUser {
            return;
        }
        let user = Self::user_of(pending);
        if let Some(count) = self.busy_users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.busy_users.remove(user);
            }
        }
    }

    /// One timer for the earliest moment something can move again.
    fn schedule_wakeup(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let next_retry = self.delayed.keys().next().map(|(at, _)| *at);
        let reopen = if self.ready.is_empty() {
            None
        } else {
            self.breaker.reopens_at()
        };
        let Some(at) = [next_retry, reopen, self.linger_until].into_iter().flatten().min() else {
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

    /// Hands an event on after retirement: to the replacement, or finished.
    fn hand_on(&self, pending: Pending) {
        match &self.retired {
            Some(Some(replacement)) => {
                let routed = Routed {
                    source_id: Arc::from(self.source_id.as_str()),
                    event: pending.event,
                    ack: pending.ack,
                    parked: None,
                    trace: pending.trace,
                    permit: pending.permit,
                };
                let send = replacement.send(routed);
                actix::spawn(async move {
                    if let Err(error) = send.await {
                        tracing::error!(%error, "replacement destination unavailable; the record will be redelivered");
                    }
                });
            }
            _ => pending.ack.done(),
        }
    }

    fn finished(&mut self, id: u64, result: Result<(), DeliveryError>, ctx: &mut Context<Self>) {
        let Some(Request { batch, span, .. }) = self.requests.remove(&id) else {
            return;
        };
        span.record(
            "outcome",
            match &result {
                Ok(()) => "delivered",
                Err(error) if error.retryable => "retry",
                Err(_) => "refused",
            },
        );
        self.last_progress = Instant::now();
        self.in_flight -= batch.len();
        if self.retired.is_some() {
            let delivered = result.is_ok();
            for pending in batch {
                if delivered {
                    pending.ack.done();
                } else {
                    self.hand_on(pending);
                }
            }
            if self.in_flight == 0 {
                ctx.stop();
            }
            return;
        }
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.restart_streak = 0;
                self.breaker.success();
                self.stats.delivered += batch.len() as u64;
                for pending in batch {
                    self.latency
                        .observe(pending.first_seen.elapsed().unwrap_or_default().as_secs_f64());
                    self.release_user(&pending);
                    pending.ack.done();
                }
            }
            Err(error) if error.retryable => {
                self.breaker.failure(now);
                self.stats.last_error = Some(error.reason.clone());
                let first = batch.first().and_then(|p| p.event.message_id());
                self.stats.recent_errors.push(&error.reason, first, batch.len());
                tracing::warn!(
                    source_id = %self.source_id, destination_id = %self.config.id,
                    reason = %error.reason, events = batch.len(), "delivery failed, will retry"
                );
                let window = Duration::from_secs(self.config.retry.retry_window_secs);
                // One retry time for the whole batch: its events come back together and
                // in their order, which per-user ordering relies on.
                let attempts = batch.iter().map(|p| p.attempts + 1).max().unwrap_or(1);
                let at = now + retry::delay(&self.config.retry, attempts, error.retry_after);
                for mut pending in batch {
                    pending.attempts += 1;
                    pending.last_error = Some(error.reason.clone());
                    if pending.first_seen.elapsed().unwrap_or_default() >= window {
                        let reason = format!("retry window of {window:?} ran out; last error: {}", error.reason);
                        self.dead_letter(pending, reason);
                        continue;
                    }
                    self.stats.retried += 1;
                    self.sequence += 1;
                    self.delayed.insert((at, self.sequence), pending);
                }
            }
            Err(error) => {
                // The destination answered, so it is up: a refusal is about the event.
                self.breaker.success();
                self.stats.last_error = Some(error.reason.clone());
                let first = batch.first().and_then(|p| p.event.message_id());
                self.stats.recent_errors.push(&error.reason, first, batch.len());
                for mut pending in batch {
                    pending.attempts += 1;
                    self.dead_letter(pending, error.reason.clone());
                }
            }
        }
        self.pump(ctx);
    }

    /// An event that was sent (so it held its user's turn) and won't be delivered.
    fn dead_letter(&mut self, pending: Pending, reason: String) {
        self.release_user(&pending);
        self.dead_letter_at(pending, Stage::Deliver, reason);
    }

    fn dead_letter_at(&mut self, pending: Pending, stage: Stage, reason: String) {
        self.stats.dead_lettered += 1;
        tracing::warn!(
            source_id = %self.source_id, destination_id = %self.config.id,
            message_id = pending.event.message_id().unwrap_or_default(), %reason, "event dead-lettered"
        );
        let value = serde_json::to_vec(pending.event.as_ref()).unwrap_or_default();
        let letter = DeadLetter {
            source_id: self.source_id.clone(),
            destination_id: Some(self.config.id.clone()),
            stage,
            reason: match &pending.last_error {
                Some(last) if *last != reason => format!("{reason} (last error: {last})"),
                _ => reason,
            },
            attempts: pending.attempts,
            message_id: pending.event.message_id().map(str::to_string),
            value,
            ack: pending.ack,
        };
        // The dead-letter writer acks the event once Kafka has it; if it is gone the
        // share is dropped unfinished and the record is redelivered.
        let send = self.dead_letters.send(letter);
        actix::spawn(async move {
            if let Err(error) = send.await {
                tracing::error!(%error, "dead-letter writer unavailable; the record will be redelivered");
            }
        });
    }
}

impl Actor for DestinationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // In messages, each holding at least one permit: the budget is the bound.
        ctx.set_mailbox_capacity(self.budget.capacity().min(self.config.max_buffered_events).max(1));
        self.start_client(ctx);
        ctx.run_interval(STALL_CHECK_EVERY, |actor, ctx| actor.check_stalled(ctx));
        tracing::info!(source_id = %self.source_id, destination_id = %self.config.id, "destination started");
    }
}

impl Handler<Routed> for DestinationActor {
    type Result = ();

    /// Always takes the event: its sender took room for it in the budget.
    fn handle(&mut self, message: Routed, ctx: &mut Self::Context) {
        if self.take(message) {
            self.pump(ctx);
        }
    }
}

impl Handler<RoutedBatch> for DestinationActor {
    type Result = ();

    /// Takes every event, then starts requests once.
    fn handle(&mut self, batch: RoutedBatch, ctx: &mut Self::Context) {
        let mut queued = false;
        for message in batch.0 {
            queued |= self.take(message);
        }
        if queued {
            self.pump(ctx);
        }
    }
}

impl DestinationActor {
    /// Takes one event: transformed, then finished (filtered, a blackhole), dead-lettered,
    /// or put in line. Returns whether it was put in line.
    fn take(&mut self, mut message: Routed) -> bool {
        self.stats.received += 1;
        if self.retired.is_some() {
            let pending = Pending::new(message);
            self.hand_on(pending);
            return false;
        }
        // A parked event passed the gate when it was first taken.
        if message.parked.is_none()
            && let Some(skip) = self.gate.as_ref().and_then(|gate| gate.check(&message.event))
        {
            self.stats.filtered += 1;
            match skip {
                Skip::Integrations => self.stats.filtered_integrations += 1,
                Skip::Consent => self.stats.filtered_consent += 1,
            }
            message.ack.done();
            return false;
        }
        if message.parked.is_none() && !self.transform.is_empty() {
            match self.transform.apply(message.event.as_ref().clone()) {
                Ok(Transformed::Keep(event)) => message.event = Arc::new(event),
                Ok(Transformed::Filtered) => {
                    self.stats.filtered += 1;
                    message.ack.done();
                    return false;
                }
                Err(error) => {
                    let pending = Pending::new(message);
                    self.dead_letter_at(pending, Stage::Transform, error.to_string());
                    return false;
                }
            }
        }
        if matches!(self.config.kind, DestinationKind::Blackhole(_)) {
            // A blackhole: delivered on arrival.
            self.stats.delivered += 1;
            message.ack.done();
            return false;
        }
        self.ready.push_back(Pending::new(message));
        true
    }
}

impl Handler<Retire> for DestinationActor {
    type Result = ();

    fn handle(&mut self, message: Retire, ctx: &mut Self::Context) {
        tracing::info!(
            source_id = %self.source_id, destination_id = %self.config.id,
            replaced = message.forward_to.is_some(), buffered = self.buffered(), "destination retired"
        );
        self.retired = Some(message.forward_to);
        if let Some((_, handle)) = self.wakeup.take() {
            ctx.cancel_future(handle);
        }
        let waiting: Vec<Pending> = self
            .ready
            .drain(..)
            .chain(std::mem::take(&mut self.delayed).into_values())
            .collect();
        for pending in waiting {
            self.hand_on(pending);
        }
        if self.in_flight == 0 {
            ctx.stop();
        }
    }
}

impl Handler<GetDestinationStats> for DestinationActor {
    type Result = MessageResult<GetDestinationStats>;

    fn handle(&mut self, _: GetDestinationStats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.buffered = self.buffered();
        stats.in_flight = self.in_flight;
        stats.state = self.state();
        stats.queued = self.budget.held().saturating_sub(stats.buffered);
        stats.circuit_open = matches!(self.breaker.state(), BreakerState::Open { .. });
        stats.since_progress_ms = if stats.buffered == 0 {
            0
        } else {
            self.last_progress.elapsed().as_millis() as u64
        };
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::config::{Ordering as Order, RetryConfig, WebhookConfig};
    use crate::test_support::{Collect, Count};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    /// The test receivers listen on loopback, which the operator allows here.
    fn local_egress() -> Arc<EgressPolicy> {
        Arc::new(
            EgressPolicy::default()
                .allowing(&["127.0.0.0/8"])
                .allowing_plain_http(&["127.0.0.1"]),
        )
    }

    /// A webhook nobody listens on, retried only after a long wait: events pile up.
    fn unreachable_webhook() -> DestinationConfig {
        DestinationConfig {
            id: "down".into(),
            sources: vec!["web".into()],
            kind: DestinationKind::Webhook(WebhookConfig {
                url: "http://127.0.0.1:1/hook".into(),
                signing_secret: None,
                bearer_token: None,
                basic_auth: None,
                headers: Default::default(),
                timeout_ms: 1_000,
                batch_max_events: 1,
                tls: Default::default(),
            }),
            retry: RetryConfig {
                min_backoff_ms: 60_000,
                max_backoff_ms: 60_000,
                ..RetryConfig::default()
            },
            concurrency: 1,
            max_buffered_events: 100,
            breaker_failures: 100,
            breaker_cooldown_ms: 1_000,
            stall_after_secs: 120,
            ordering: Order::None,
            integration_name: None,
            honor_integrations: true,
            consent_categories: Vec::new(),
            require_consent: false,
            transforms: Vec::new(),
        }
    }

    fn routed(message_id: &str, completed: &Count) -> Routed {
        let event: Event = serde_json::from_value(
            serde_json::json!({"type": "track", "userId": "u", "event": "e", "messageId": message_id}),
        )
        .expect("sample parses");
        Routed {
            source_id: Arc::from("web"),
            event: Arc::new(event),
            ack: Ack::new(completed.clone()),
            parked: None,
            trace: None,
            permit: Permit::none(),
        }
    }

    async fn stats_when(actor: &Addr<DestinationActor>, done: impl Fn(&DestinationStats) -> bool) -> DestinationStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = actor.send(GetDestinationStats).await.expect("alive");
            if done(&stats) || Instant::now() > deadline {
                return stats;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
    }

    #[actix::test]
    async fn a_failing_destination_with_its_budget_spent_parks_what_waits_for_a_retry() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let parking = Collect(seen.clone()).start();
        let dead = Collect(seen.clone()).start();
        let completed = Count::default();
        let config = DestinationConfig {
            max_buffered_events: 4,
            ..unreachable_webhook()
        };
        let budget = Budget::new(4);
        let actor = DestinationActor::new("web", config, dead.clone().recipient(), budget.clone(), local_egress())
            .with_parking(parking.recipient())
            .start();
        for i in 0..4 {
            let mut event = routed(&format!("m{i}"), &completed);
            event.permit = budget.take(1).await;
            actor.send(event).await.expect("alive");
        }
        // Nobody listens: each attempt fails and waits about a minute (with jitter) for
        // its retry. Once the budget was spent and an event waiting, the destination
        // was failing with no room: the event due last went to the retry topic, making
        // room for one, and nothing more was parked while there was room.
        let stats = stats_when(&actor, |stats| stats.retried == 4).await;
        let parked = seen.lock().expect("not poisoned").clone();
        assert_eq!(parked.len(), 1, "{parked:?} {stats:?}");
        assert!(parked[0].starts_with("parked: m"), "{parked:?}");
        assert_eq!((stats.parked, stats.buffered), (1, 3));
        assert_eq!(completed.0.load(Ordering::SeqCst), 1, "a parked event is finished here");
        let room = budget.try_take(1).expect("the parked event's room is free");
        let mut event = routed("m4", &completed);
        event.permit = room;
        actor.send(event).await.expect("alive");
        let stats = stats_when(&actor, |stats| stats.parked == 2).await;
        let parked = seen.lock().expect("not poisoned").clone();
        assert_eq!(parked.len(), 2, "{parked:?} {stats:?}");
        assert!(
            parked[1] != parked[0] && parked[1] != "parked: m4",
            "m4 is being tried; one of those waiting goes: {parked:?}"
        );

        // Back from the retry topic past its retry window: the next failure dead-letters it.
        let mut back = routed("m9", &completed);
        back.parked = Some(Parked {
            attempts: 7,
            parks: 1,
            first_seen: SystemTime::now() - Duration::from_secs(5 * 3600),
            last_error: Some("connect refused".into()),
        });
        let retired_config = DestinationConfig {
            id: "down-2".into(),
            retry: RetryConfig {
                min_backoff_ms: 1,
                max_backoff_ms: 1,
                ..RetryConfig::default()
            },
            ..unreachable_webhook()
        };
        let fresh = DestinationActor::new(
            "web",
            retired_config,
            dead.recipient(),
            Budget::unbounded(),
            local_egress(),
        )
        .start();
        fresh.send(back).await.expect("alive");
        let deadline = Instant::now() + Duration::from_secs(5);
        while completed.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        let seen = seen.lock().expect("not poisoned").clone();
        let dead: Vec<&String> = seen.iter().filter(|s| s.starts_with("dead: ")).collect();
        assert_eq!(dead.len(), 1, "{seen:?}");
        assert!(dead[0].contains("retry window"), "{dead:?}");
        let stats = fresh.send(GetDestinationStats).await.expect("alive");
        assert_eq!(stats.dead_lettered, 1);
    }

    /// A local HTTP endpoint whose first connection never gets an answer; later ones get 200.
    fn hangs_once() -> std::net::SocketAddr {
        local_webhook(true, Duration::ZERO)
    }

    /// A local HTTP endpoint answering 200 to each request after `delay`; with
    /// `hang_first`, its first connection never gets an answer.
    fn local_webhook(hang_first: bool, delay: Duration) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                if hang_first && index == 0 {
                    held.push(stream);
                    continue;
                }
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65536];
                    let mut request = Vec::new();
                    while let Ok(read) = stream.read(&mut buffer) {
                        if read == 0 {
                            break;
                        }
                        request.extend_from_slice(&buffer[..read]);
                        let text = String::from_utf8_lossy(&request);
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|line| {
                                    line.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().to_string())
                                })
                                .and_then(|v| v.parse::<usize>().ok())
                                .unwrap_or(0);
                            if body.len() >= length {
                                std::thread::sleep(delay);
                                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                                request.clear();
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn an_event_parked_again_stays_away_longer_each_time_up_to_a_cap() {
        let waits: Vec<Duration> = (0..12)
            .map(|parks| park_wait(parks, Duration::ZERO, Duration::ZERO))
            .collect();
        assert_eq!(waits[0], PARK_MIN_WAIT);
        assert_eq!(waits[3], PARK_MIN_WAIT * 8);
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]), "{waits:?}");
        assert_eq!(waits[11], PARK_MAX_WAIT);
        assert_eq!(park_wait(u32::MAX, Duration::ZERO, Duration::ZERO), PARK_MAX_WAIT);
        let reopens = Duration::from_secs(30);
        assert_eq!(
            park_wait(0, Duration::from_secs(2), reopens),
            reopens,
            "not before the breaker reopens"
        );
        assert_eq!(
            park_wait(0, Duration::from_secs(40), reopens),
            Duration::from_secs(40),
            "nor before its retry"
        );
    }

    #[actix::test]
    async fn a_healthy_destination_slower_than_its_sender_paces_it_and_parks_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let parking = Collect(seen.clone()).start();
        let dead = Collect(seen.clone()).start();
        let completed = Count::default();
        let mut config = DestinationConfig {
            max_buffered_events: 2,
            ..unreachable_webhook()
        };
        if let DestinationKind::Webhook(webhook) = &mut config.kind {
            webhook.url = format!("http://{}/hook", local_webhook(false, Duration::from_millis(50)));
        }
        let budget = Budget::new(2);
        let actor = DestinationActor::new("web", config, dead.recipient(), budget.clone(), local_egress())
            .with_parking(parking.recipient())
            .start();
        let started = Instant::now();
        for i in 0..8 {
            let mut event = routed(&format!("m{i}"), &completed);
            event.permit = budget.take(1).await;
            actor.send(event).await.expect("alive");
        }
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "the sender waited for room: 8 events, 2 at a time, 50 ms each"
        );
        let stats = stats_when(&actor, |stats| stats.delivered == 8).await;
        assert_eq!((stats.delivered, stats.parked), (8, 0), "{stats:?}");
        assert!(
            seen.lock().expect("not poisoned").is_empty(),
            "nothing parked or dead-lettered"
        );
        assert_eq!(completed.0.load(Ordering::SeqCst), 8);
        assert_eq!(budget.held(), 0, "every permit came back");
    }

    #[actix::test]
    async fn a_stalled_request_restarts_the_client_and_its_events_are_sent_again() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dead = Collect(seen.clone()).start();
        let completed = Count::default();
        let mut config = unreachable_webhook();
        if let DestinationKind::Webhook(webhook) = &mut config.kind {
            webhook.url = format!("http://{}/hook", hangs_once());
            webhook.timeout_ms = 600_000;
        }
        config.stall_after_secs = 1;
        let actor = DestinationActor::new("web", config, dead.recipient(), Budget::new(100), local_egress()).start();
        actor.send(routed("m1", &completed)).await.expect("alive");
        let deadline = Instant::now() + Duration::from_secs(15);
        while completed.0.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(50)).await;
        }
        let stats = actor.send(GetDestinationStats).await.expect("alive");
        assert_eq!(
            completed.0.load(Ordering::SeqCst),
            1,
            "delivered after the restart: {stats:?}"
        );
        assert_eq!((stats.stalls, stats.restarts, stats.delivered), (1, 1, 1), "{stats:?}");
        assert!(seen.lock().expect("not poisoned").is_empty(), "nothing dead-lettered");
    }

    #[actix::test]
    async fn a_replaced_destination_hands_its_waiting_events_to_the_replacement() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replacement = Collect(seen.clone()).start();
        let dead = Collect(seen.clone()).start();
        let completed = Count::default();
        let actor = DestinationActor::new(
            "web",
            unreachable_webhook(),
            dead.recipient(),
            Budget::new(100),
            local_egress(),
        )
        .start();
        for i in 0..3 {
            actor.send(routed(&format!("m{i}"), &completed)).await.expect("alive");
        }
        // Let the connection attempts fail and the events move to their (long) retry wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while actor.send(GetDestinationStats).await.expect("alive").retried < 3 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            completed.0.load(Ordering::SeqCst),
            0,
            "nothing is finished while waiting to retry"
        );

        actor
            .send(Retire {
                forward_to: Some(replacement.recipient()),
            })
            .await
            .expect("alive");
        let deadline = Instant::now() + Duration::from_secs(5);
        while completed.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        let mut got = seen.lock().expect("not poisoned").clone();
        got.sort();
        assert_eq!(
            got,
            vec!["m0", "m1", "m2"],
            "moved to the replacement, none dead-lettered"
        );
        assert_eq!(completed.0.load(Ordering::SeqCst), 3);
    }
}
