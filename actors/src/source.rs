//! `SourceSupervisor`: the entry point of one source's events into the actor system.
//! It checks each record again (external producers skip ingest), drops repeats by
//! messageId, and fans the event out to every destination of the source, each with
//! its own share of the record's [`Ack`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_schemas::record::{RecordHeaders, decode_value};
use switchyard_schemas::trace::Traceparent;
use switchyard_schemas::{Event, validate};
use switchyard_telemetry::TARGET;

use crate::ack::Ack;
use crate::dead_letter::{DeadLetter, Stage};
use crate::dedup::Dedup;
use crate::park::Parked;
use crate::samples::RecentErrors;
use crate::suppress::{SetSuppression, Suppression};
use crate::transform::{Transform, Transformed};

/// A record of this source as read from Kafka.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Inbound {
    pub headers: RecordHeaders,
    pub value: Vec<u8>,
    pub ack: Ack,
}

/// Consecutive records of one partition for this source, handed over in one message:
/// one wakeup of the supervisor's thread for many records.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Outcome>")]
pub struct InboundBatch(pub Vec<Inbound>);

/// Events for one destination, in order, handed over in one message.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RoutedBatch(pub Vec<Routed>);

/// A decoded, validated event on its way to one destination, with that destination's
/// share of the record.
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
}

/// How many events a destination holds, against its limit: those it has taken
/// (`buffered`, kept by the destination) plus those handed over and still in its
/// mailbox (`queued`, counted up by the supervisor and down by the destination), so the
/// bound holds however far the destination's thread lags behind. The supervisor reads
/// it before handing over: a full destination makes its source wait without a round
/// trip per event.
#[derive(Debug)]
pub struct Load {
    buffered: AtomicUsize,
    queued: AtomicUsize,
    capacity: usize,
}

impl Load {
    pub fn new(capacity: usize) -> Arc<Load> {
        Arc::new(Load {
            buffered: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            capacity,
        })
    }

    pub fn set(&self, buffered: usize) {
        self.buffered.store(buffered, Ordering::Relaxed);
    }

    /// More events on their way into the destination's mailbox.
    pub fn queue(&self, events: usize) {
        self.queued.fetch_add(events, Ordering::Relaxed);
    }

    /// The destination took events from its mailbox. Events that arrive without
    /// [`Load::queue`] (back from the retry topic) leave the count at zero.
    pub fn dequeue(&self, events: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(events)));
    }

    /// Events handed over and still in the destination's mailbox.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed) >= self.capacity
    }
}

/// One destination of a source, as its supervisor sees it.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination_id: String,
    pub recipient: Recipient<RoutedBatch>,
    pub load: Arc<Load>,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SupervisorStats {
    pub received: u64,
    pub delivered: u64,
    pub duplicates: u64,
    /// Dropped as events of a deleted (suppressed) user.
    pub suppressed: u64,
    pub filtered: u64,
    /// Rejected records, of which `invalid` failed validation (the rest a transform).
    pub rejected: u64,
    pub invalid: u64,
    /// Records in the mailbox now.
    pub queued: usize,
    pub recent_errors: RecentErrors,
}

#[derive(Debug, Message)]
#[rtype(result = "SupervisorStats")]
pub struct GetStats;

/// Replaces the source's destinations (a configuration reload). Records already handed
/// over stay with the destinations that took them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetRoutes(pub Vec<Route>);

/// Replaces the source's own transforms (a configuration reload); records after it
/// are transformed the new way.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetTransform(pub Transform);

/// How a supervisor remembers messageIds.
#[derive(Debug, Clone, Copy)]
pub struct DedupSettings {
    pub window: Duration,
    pub capacity: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings {
            window: Duration::from_secs(3600),
            capacity: 100_000,
        }
    }
}

/// How the consumer reaches a supervisor: one shared `Addr` (actix reports a full
/// mailbox only to the sender that filled it) and the records sent and not yet taken.
#[derive(Debug)]
pub struct SupervisorHandle {
    pub addr: Addr<SourceSupervisor>,
    pub queued: Arc<AtomicUsize>,
}

pub struct SourceSupervisor {
    source_id: Arc<str>,
    /// Records in the mailbox, counted up by the consumer, down here.
    queued: Arc<AtomicUsize>,
    routes: Vec<Route>,
    dead_letters: Recipient<DeadLetter>,
    dedup: Dedup,
    transform: Transform,
    suppression: Arc<Suppression>,
    stats: SupervisorStats,
}

impl std::fmt::Debug for SourceSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSupervisor")
            .field("source_id", &self.source_id)
            .field("destinations", &self.routes.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Bounded, so a slow source pushes back on the Kafka poll loop. In messages, each a
/// batch of up to 512 records (one poll), so at most about 8,000 records wait here.
const MAILBOX_CAPACITY: usize = 16;
/// How long to wait before offering an event again to a destination whose buffer is full.
const FULL_RETRY: Duration = Duration::from_millis(50);

impl SourceSupervisor {
    pub fn new(source_id: &str, routes: Vec<Route>, dead_letters: Recipient<DeadLetter>, dedup: DedupSettings) -> Self {
        SourceSupervisor {
            source_id: Arc::from(source_id),
            queued: Arc::default(),
            routes,
            dead_letters,
            dedup: Dedup::new(dedup.window, dedup.capacity),
            transform: Transform::default(),
            suppression: Arc::default(),
            stats: SupervisorStats::default(),
        }
    }

    /// Shares the count of records in the mailbox with whoever sends them.
    pub fn with_queue(mut self, queued: Arc<AtomicUsize>) -> Self {
        self.queued = queued;
        self
    }

    fn taken(&self, records: usize) {
        let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(records))
        });
    }

    /// Users whose events the source drops (deleted from the archive).
    pub fn with_suppression(mut self, suppression: Arc<Suppression>) -> Self {
        self.suppression = suppression;
        self
    }

    /// The source's own transforms, applied before the fan-out.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = transform;
        self
    }

    /// A record for the dead-letter topic; its share is done once Kafka has it.
    fn reject(&mut self, stage: Stage, reason: String, message: Inbound) -> DeadLetter {
        self.stats.rejected += 1;
        let message_id = message.headers.message_id.as_deref();
        self.stats
            .recent_errors
            .push(&format!("{}: {reason}", stage.as_str()), message_id, 1);
        tracing::warn!(source_id = %self.source_id, stage = stage.as_str(), %reason, "record rejected");
        DeadLetter {
            source_id: self.source_id.to_string(),
            destination_id: None,
            stage,
            reason,
            attempts: 0,
            message_id: message.headers.message_id,
            value: message.value,
            ack: message.ack,
        }
    }

    /// Checks, deduplicates and transforms one record, and adds it to each route's
    /// batch. A rejected record goes to `letters`.
    fn admit(&mut self, message: Inbound, batches: &mut [Vec<Routed>], letters: &mut Vec<DeadLetter>) -> Outcome {
        let parent = message.headers.traceparent.as_deref().and_then(Traceparent::parse);
        let span = tracing::info_span!(
            target: TARGET, "route",
            source_id = %self.source_id,
            message_id = message.headers.message_id.as_deref().unwrap_or_default(),
            outcome = tracing::field::Empty,
        );
        if let Some(parent) = parent {
            switchyard_telemetry::set_parent(&span, parent);
        }
        // Tracing off: the record's context goes on as it came, with no new ids drawn
        // per record on the hot path.
        let trace = if span.is_disabled() {
            parent
        } else {
            Some(switchyard_telemetry::pass_on(
                &span,
                parent.unwrap_or_else(Traceparent::new_root),
            ))
        };
        let outcome = self.admit_traced(message, trace, batches, letters);
        span.record("outcome", outcome.as_str());
        outcome
    }

    fn admit_traced(
        &mut self,
        message: Inbound,
        trace: Option<Traceparent>,
        batches: &mut [Vec<Routed>],
        letters: &mut Vec<DeadLetter>,
    ) -> Outcome {
        self.stats.received += 1;
        let event = match self.check(&message) {
            Ok(event) => event,
            Err(reason) => {
                self.stats.invalid += 1;
                letters.push(self.reject(Stage::Validate, reason.clone(), message));
                return Outcome::Rejected { reason };
            }
        };
        // Before the transforms: the ids the user was deleted by are the ones it sent.
        if self.suppression.holds(&event) {
            self.stats.suppressed += 1;
            message.ack.done();
            return Outcome::Suppressed;
        }
        if let Some(id) = event.message_id()
            && !self.dedup.first_time(id, Instant::now())
        {
            self.stats.duplicates += 1;
            message.ack.done();
            return Outcome::Duplicate;
        }
        let event = match self.transform.apply(event) {
            Ok(Transformed::Keep(event)) => Arc::new(event),
            Ok(Transformed::Filtered) => {
                self.stats.filtered += 1;
                message.ack.done();
                return Outcome::Filtered;
            }
            Err(error) => {
                let reason = error.to_string();
                letters.push(self.reject(Stage::Transform, reason.clone(), message));
                return Outcome::Rejected { reason };
            }
        };
        for batch in batches.iter_mut() {
            batch.push(Routed {
                source_id: self.source_id.clone(),
                event: event.clone(),
                ack: message.ack.share(),
                parked: None,
                trace,
            });
        }
        message.ack.done();
        self.stats.delivered += 1;
        Outcome::Delivered {
            destinations: batches.len(),
        }
    }

    /// Admits a batch of records and hands each destination its share in one message.
    /// Hands over without waiting where there is room; only a full destination (or
    /// mailbox) makes the batch, and so this source, wait.
    fn dispatch(&mut self, messages: Vec<Inbound>) -> ResponseActFuture<Self, Vec<Outcome>> {
        let mut batches: Vec<Vec<Routed>> = self.routes.iter().map(|_| Vec::with_capacity(messages.len())).collect();
        let mut letters = Vec::new();
        let outcomes: Vec<Outcome> = messages
            .into_iter()
            .map(|message| self.admit(message, &mut batches, &mut letters))
            .collect();
        let mut waiting: Vec<(Route, Vec<Routed>)> = Vec::new();
        for (route, batch) in self.routes.iter().zip(batches) {
            if batch.is_empty() {
                continue;
            }
            if route.load.is_full() {
                waiting.push((route.clone(), batch));
                continue;
            }
            let count = batch.len();
            route.load.queue(count);
            match route.recipient.try_send(RoutedBatch(batch)) {
                Ok(()) => {}
                Err(SendError::Full(batch)) => {
                    route.load.dequeue(count);
                    waiting.push((route.clone(), batch.0));
                }
                Err(SendError::Closed(_)) => {
                    // The shares went down with the mailbox: the records are redelivered.
                    tracing::error!(source_id = %self.source_id, destination_id = %route.destination_id, "destination actor unavailable");
                }
            }
        }
        if waiting.is_empty() && letters.is_empty() {
            return Box::pin(fut::ready(outcomes));
        }
        let source_id = self.source_id.clone();
        let dead_letters = self.dead_letters.clone();
        let wait = async move {
            for letter in letters {
                if let Err(error) = dead_letters.send(letter).await {
                    tracing::error!(%error, "dead-letter writer unavailable; the record will be redelivered");
                }
            }
            for (route, batch) in waiting {
                while route.load.is_full() {
                    actix::clock::sleep(FULL_RETRY).await;
                }
                route.load.queue(batch.len());
                if let Err(error) = route.recipient.send(RoutedBatch(batch)).await {
                    tracing::error!(%source_id, destination_id = %route.destination_id, %error, "destination actor unavailable");
                }
            }
        };
        Box::pin(wait.into_actor(self).map(move |_, _, _| outcomes))
    }

    fn check(&self, message: &Inbound) -> Result<Event, String> {
        if *message.headers.source_id != *self.source_id {
            return Err(format!(
                "record of source {} reached supervisor {}",
                message.headers.source_id, self.source_id
            ));
        }
        let event = decode_value(&message.value).map_err(|error| error.to_string())?;
        validate(&event).map_err(|error| error.to_string())?;
        Ok(event)
    }
}

impl Actor for SourceSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        tracing::info!(source_id = %self.source_id, destinations = self.routes.len(), "source supervisor started");
    }
}

impl Handler<Inbound> for SourceSupervisor {
    /// Atomic: one batch at a time, so records reach each destination in order and a
    /// full destination holds the source back instead of piling up futures.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, message: Inbound, _ctx: &mut Self::Context) -> Self::Result {
        self.taken(1);
        let response = self.dispatch(vec![message]);
        AtomicResponse::new(Box::pin(
            response.map(|mut outcomes, _, _| outcomes.pop().unwrap_or(Outcome::Filtered)),
        ))
    }
}

impl Handler<InboundBatch> for SourceSupervisor {
    type Result = AtomicResponse<Self, Vec<Outcome>>;

    fn handle(&mut self, batch: InboundBatch, _ctx: &mut Self::Context) -> Self::Result {
        self.taken(batch.0.len());
        AtomicResponse::new(self.dispatch(batch.0))
    }
}

impl Handler<SetRoutes> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, message: SetRoutes, _ctx: &mut Self::Context) {
        let ids: Vec<&str> = message.0.iter().map(|route| route.destination_id.as_str()).collect();
        tracing::info!(source_id = %self.source_id, destinations = ?ids, "source destinations updated");
        self.routes = message.0;
    }
}

impl Handler<SetTransform> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, message: SetTransform, _ctx: &mut Self::Context) {
        tracing::info!(source_id = %self.source_id, "source transforms updated");
        self.transform = message.0;
    }
}

impl Handler<SetSuppression> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, message: SetSuppression, _ctx: &mut Self::Context) {
        tracing::info!(source_id = %self.source_id, users = message.0.len(), "source suppression list updated");
        self.suppression = message.0;
    }
}

impl Handler<GetStats> for SourceSupervisor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.queued = self.queued.load(Ordering::Relaxed);
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Collect, Count};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    fn inbound(source: &str, value: serde_json::Value, done: &Count) -> Inbound {
        let event: Event = serde_json::from_value(value.clone()).expect("sample parses");
        Inbound {
            headers: RecordHeaders::new(source, &event, None),
            value: serde_json::to_vec(&value).expect("serialises"),
            ack: Ack::new(done.clone()),
        }
    }

    #[actix::test]
    async fn fans_out_dedups_and_dead_letters_invalid_records_completing_each_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let first = Collect(seen.clone()).start();
        let second = Collect(seen.clone()).start();
        let dead = Collect(seen.clone()).start();
        let route = |id: &str, recipient: Recipient<RoutedBatch>| Route {
            destination_id: id.into(),
            recipient,
            load: Load::new(10),
        };
        let destinations = vec![route("a", first.recipient()), route("b", second.recipient())];
        let supervisor = SourceSupervisor::new("web", destinations, dead.recipient(), DedupSettings::default()).start();
        let completed = Count::default();

        let event = serde_json::json!({"type": "track", "userId": "u", "event": "e", "messageId": "m1"});
        let good = inbound("web", event.clone(), &completed);
        assert_eq!(
            supervisor.send(good).await.expect("alive"),
            Outcome::Delivered { destinations: 2 }
        );
        let again = inbound("web", event, &completed);
        assert_eq!(supervisor.send(again).await.expect("alive"), Outcome::Duplicate);

        let mut broken = inbound(
            "web",
            serde_json::json!({"type": "identify", "anonymousId": "a"}),
            &completed,
        );
        broken.value = br#"{"type": "identify", "traits": {}}"#.to_vec();
        match supervisor.send(broken).await.expect("alive") {
            Outcome::Rejected { reason } => assert!(reason.contains("userId or an anonymousId"), "{reason}"),
            other => panic!("expected a rejection, got {other:?}"),
        }

        let mut list = Suppression::default();
        list.insert(crate::suppress::digest("deleted-user"));
        supervisor.send(SetSuppression(Arc::new(list))).await.expect("alive");
        let gone = serde_json::json!({"type": "track", "userId": "deleted-user", "event": "e", "messageId": "m2"});
        let gone = inbound("web", gone, &completed);
        assert_eq!(supervisor.send(gone).await.expect("alive"), Outcome::Suppressed);

        let stats = supervisor.send(GetStats).await.expect("alive");
        assert_eq!(
            stats,
            SupervisorStats {
                received: 4,
                delivered: 1,
                duplicates: 1,
                suppressed: 1,
                filtered: 0,
                rejected: 1,
                invalid: 1,
                queued: 0,
                recent_errors: stats.recent_errors.clone(),
            }
        );
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(seen.iter().filter(|s| *s == "m1").count(), 2, "{seen:?}");
        assert!(seen.iter().any(|s| s.starts_with("dead: identify needs")), "{seen:?}");
        assert!(
            !seen.contains(&"m2".to_string()),
            "a suppressed user's event reaches no one"
        );
        assert_eq!(
            completed.0.load(Ordering::SeqCst),
            4,
            "every record completes exactly once"
        );
    }

    #[actix::test]
    async fn a_full_destination_holds_its_source_back_until_it_has_room() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let destination = Collect(seen.clone()).start();
        let load = Load::new(1);
        load.set(1);
        let route = Route {
            destination_id: "slow".into(),
            recipient: destination.recipient(),
            load: load.clone(),
        };
        let dead = Collect(seen.clone()).start();
        let supervisor = SourceSupervisor::new("web", vec![route], dead.recipient(), DedupSettings::default()).start();
        let completed = Count::default();
        let event = serde_json::json!({"type": "track", "userId": "u", "event": "e", "messageId": "held"});
        let pending = supervisor.send(inbound("web", event, &completed));
        let waited = actix::clock::timeout(Duration::from_millis(300), pending).await;
        assert!(
            waited.is_err(),
            "the supervisor must wait while the destination is full"
        );
        assert!(seen.lock().expect("not poisoned").is_empty());
        load.set(0);
        let stats = actix::clock::timeout(Duration::from_secs(5), supervisor.send(GetStats)).await;
        assert!(stats.is_ok(), "the supervisor moves on once there is room");
        assert_eq!(*seen.lock().expect("not poisoned"), vec!["held".to_string()]);
        assert_eq!(completed.0.load(Ordering::SeqCst), 1);
    }
}
