//! `DestinationActor`: one per (source, destination). A thin shell around its
//! [`DeliveryQueue`] and its kind's [`Delivery`] client: it takes events (gate and
//! transforms first), starts requests within the concurrency limit and the circuit
//! breaker (`send.rs`), acts on each answer, parks what a failing destination can't
//! hold (`park.rs`), and hands its events on when retired. Nothing it does waits on
//! another destination, and nothing another destination does waits on it.

mod park;
mod send;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use prometheus_client::metrics::histogram::Histogram;
use switchyard_schemas::Event;
use switchyard_schemas::trace::Traceparent;

use super::breaker::{Breaker, BreakerState};
use super::config::{DestinationConfig, EgressPolicy, Ordering};
use super::delivery::Delivery;
use super::gate::{Gate, Skip};
use super::queue::{DeliveryQueue, Queued};
use super::stats::{ActorState, DestinationStats, latency_histogram};
use crate::ack::Ack;
use crate::dead_letter::{DeadLetter, Stage};
use crate::park::{Park, Parked};
use crate::protocol::{Budget, Permit, Routed, RoutedBatch};
use crate::supervise::guard;
use crate::transform::{Transform, Transformed};

struct Pending {
    event: Arc<Event>,
    ack: Ack,
    /// Wall-clock, because it travels through the retry topic.
    first_seen: SystemTime,
    /// When it was put in line here.
    arrived: Instant,
    attempts: u32,
    parks: u32,
    last_error: Option<String>,
    trace: Option<Traceparent>,
    /// Its room in this destination's budget, released when the event is finished.
    permit: Permit,
    /// Its encoded size, measured once if the kind has a byte limit.
    size: OnceCell<usize>,
    /// Sent alone since a request it was in panicked; the panics of its own requests.
    suspect: bool,
    panics: u32,
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
            arrived: Instant::now(),
            attempts: parked.attempts,
            parks: parked.parks,
            last_error: parked.last_error,
            trace: message.trace,
            permit: message.permit,
            size: OnceCell::new(),
            suspect: false,
            panics: 0,
        }
    }

    fn message_id(&self) -> &str {
        self.event.message_id().unwrap_or_default()
    }
}

impl Queued for Pending {
    fn user(&self) -> &str {
        self.event.user_key().unwrap_or_default()
    }
    fn tried(&self) -> bool {
        self.attempts > 0
    }
    fn arrived(&self) -> Instant {
        self.arrived
    }
    fn size(&self) -> usize {
        *self.size.get_or_init(|| encoded_len(&self.event))
    }
    fn alone(&self) -> bool {
        self.suspect
    }
}

/// The length of the event's JSON, without keeping it.
fn encoded_len(event: &Event) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // An event that can't be encoded fails when its request is built, with the reason.
    let _ = serde_json::to_writer(&mut counter, event);
    counter.0
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

/// A request on its way (its events are in the queue, under the same id).
struct Request {
    handle: SpawnHandle,
    since: Instant,
    /// One delivery attempt, a child of the first event's trace; closed when it ends.
    span: tracing::Span,
}

/// Makes a destination's client, on the actor's thread.
pub type Connect = Box<dyn Fn() -> Result<Box<dyn Delivery>, String>>;

pub struct DestinationActor {
    source_id: String,
    /// Shared by every source's actor of this destination: one copy, however many sources.
    config: Arc<DestinationConfig>,
    /// The operator's egress policy; the client checks each connection against it.
    egress: Arc<EgressPolicy>,
    /// `None` while it is being (re)started.
    client: Option<Rc<dyn Delivery>>,
    /// Makes the client in place of the configured kind's (tests, tools).
    connect: Option<Connect>,
    dead_letters: Recipient<DeadLetter>,
    /// The retry topic, when there is one; without it a failing destination holds its
    /// source back like a slow one.
    parking: Option<Recipient<Park>>,
    /// What its senders take room from: every event it holds has a permit of it.
    budget: Budget,
    /// The destination's `integrations` and consent rules; `None` lets everything through.
    gate: Option<Gate>,
    transform: Transform,
    queue: DeliveryQueue<Pending>,
    requests: HashMap<u64, Request>,
    /// Restarts since the last delivery, for the backoff.
    restart_streak: u32,
    /// Seconds from taking an event to its delivery, shared with whoever exports metrics.
    latency: Histogram,
    last_progress: Instant,
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
        let kind = config.kind.name();
        DestinationActor {
            source_id: source_id.to_string(),
            gate,
            queue: DeliveryQueue::new(config.ordering == Ordering::PerUser),
            config,
            egress,
            client: None,
            connect: None,
            dead_letters,
            parking: None,
            budget,
            transform: Transform::default(),
            requests: HashMap::new(),
            restart_streak: 0,
            latency: latency_histogram(),
            last_progress: Instant::now(),
            breaker,
            wakeup: None,
            linger_until: None,
            retired: None,
            stats: DestinationStats {
                kind,
                ..DestinationStats::default()
            },
        }
    }

    /// Records delivery latencies into `latency` (the exporter's copy of the same histogram).
    pub fn with_latency(mut self, latency: Histogram) -> Self {
        self.latency = latency;
        self
    }

    /// Delivers through the client `connect` makes (called again at each restart)
    /// instead of the configured kind's: for tests and tools that bring their own.
    pub fn with_delivery(mut self, connect: Connect) -> Self {
        self.connect = Some(connect);
        self
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

    fn state(&self) -> ActorState {
        if self.retired.is_some() {
            ActorState::Stopping
        } else if self.client.is_none() {
            ActorState::Restarting
        } else if matches!(self.breaker.state(), BreakerState::Open { .. }) {
            ActorState::CircuitOpen
        } else if self.queue.waiting_retry() > 0 && self.queue.ready() == 0 && self.queue.in_flight() == 0 {
            ActorState::BackingOff
        } else {
            ActorState::Running
        }
    }

    /// Takes one event: transformed, then finished (filtered), dead-lettered, or put
    /// in line. Returns whether it was put in line.
    fn take(&mut self, mut message: Routed) -> bool {
        self.stats.received += 1;
        if self.retired.is_some() {
            let pending = Pending::new(message);
            self.hand_on(pending);
            return false;
        }
        // A parked event passed the gate and its transforms when it was first taken.
        if message.parked.is_none() {
            match self.admit(message) {
                Some(admitted) => message = admitted,
                None => return false,
            }
        }
        self.queue.push(Pending::new(message));
        true
    }

    /// The gate and the transforms: the event to put in line, or `None` when it was
    /// filtered or dead-lettered. They meet tenants' data, so a panic in them is
    /// caught here and is this event's failure (dead-lettered), not the actor's.
    fn admit(&mut self, mut message: Routed) -> Option<Routed> {
        let skip = match &self.gate {
            Some(gate) => guard(|| gate.check(&message.event)),
            None => Ok(None),
        };
        let skip = match skip {
            Ok(skip) => skip,
            Err(panic) => return self.panicked_on(message, "the integrations and consent gate", panic),
        };
        if let Some(skip) = skip {
            self.stats.filtered += 1;
            match skip {
                Skip::Integrations => self.stats.filtered_integrations += 1,
                Skip::Consent => self.stats.filtered_consent += 1,
            }
            message.ack.done();
            return None;
        }
        if !self.transform.is_empty() {
            let event = message.event.as_ref().clone();
            match guard(|| self.transform.apply(event)) {
                Ok(Ok(Transformed::Keep(event))) => message.event = Arc::new(event),
                Ok(Ok(Transformed::Filtered)) => {
                    self.stats.filtered += 1;
                    message.ack.done();
                    return None;
                }
                Ok(Err(error)) => {
                    let pending = Pending::new(message);
                    self.dead_letter_at(pending, Stage::Transform, error.to_string());
                    return None;
                }
                Err(panic) => return self.panicked_on(message, "a transform", panic),
            }
        }
        Some(message)
    }

    fn panicked_on(&mut self, message: Routed, what: &str, panic: String) -> Option<Routed> {
        self.stats.panics += 1;
        let reason = format!("{what} panicked on this event: {panic}");
        self.dead_letter_at(Pending::new(message), Stage::Transform, reason);
        None
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

    /// An event that was sent (so it held its user's turn) and won't be delivered.
    fn dead_letter(&mut self, pending: Pending, reason: String) {
        self.queue.done(&pending);
        self.dead_letter_at(pending, Stage::Deliver, reason);
    }

    fn dead_letter_at(&mut self, pending: Pending, stage: Stage, reason: String) {
        self.stats.dead_lettered += 1;
        tracing::warn!(
            source_id = %self.source_id, destination_id = %self.config.id,
            message_id = pending.message_id(), %reason, "event dead-lettered"
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
        ctx.run_interval(send::STALL_CHECK_EVERY, |actor, ctx| actor.check_stalled(ctx));
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

impl Handler<Retire> for DestinationActor {
    type Result = ();

    fn handle(&mut self, message: Retire, ctx: &mut Self::Context) {
        tracing::info!(
            source_id = %self.source_id, destination_id = %self.config.id,
            replaced = message.forward_to.is_some(), buffered = self.queue.len(), "destination retired"
        );
        self.retired = Some(message.forward_to);
        if let Some((_, handle)) = self.wakeup.take() {
            ctx.cancel_future(handle);
        }
        for pending in self.queue.drain_waiting() {
            self.hand_on(pending);
        }
        if self.queue.in_flight() == 0 {
            ctx.stop();
        }
    }
}

impl Handler<GetDestinationStats> for DestinationActor {
    type Result = MessageResult<GetDestinationStats>;

    fn handle(&mut self, _: GetDestinationStats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.buffered = self.queue.len();
        stats.in_flight = self.queue.in_flight();
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
