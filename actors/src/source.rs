//! `SourceSupervisor`: the entry point of one source's events into the actor system.
//! It checks each record again (external producers skip ingest), drops repeats by
//! messageId, and fans the event out to every destination of the source, each with
//! its own share of the record's [`Ack`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_schemas::record::decode_value;
use switchyard_schemas::trace::Traceparent;
use switchyard_schemas::{Event, validate};
use switchyard_telemetry::TARGET;

use crate::dead_letter::{DeadLetter, Stage};
use crate::dedup::Dedup;
use crate::protocol::{Budget, Inbound, InboundBatch, Outcome, Permit, Route, Routed, RoutedBatch};
use crate::samples::RecentErrors;
use crate::suppress::{SetSuppression, Suppression};
use crate::transform::{Transform, Transformed};

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

pub struct SourceSupervisor {
    source_id: Arc<str>,
    /// What the consumer takes from before it hands records over.
    budget: Budget,
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

/// Records a source may hold (in its mailbox and being handed on): the consumer waits
/// for room past it, so a slow source pushes back on its partitions.
pub const SOURCE_BUDGET: usize = 8_192;
/// In messages; never the limit (each message holds at least one permit of the budget).
const MAILBOX_CAPACITY: usize = SOURCE_BUDGET;

impl SourceSupervisor {
    pub fn new(source_id: &str, routes: Vec<Route>, dead_letters: Recipient<DeadLetter>, dedup: DedupSettings) -> Self {
        SourceSupervisor {
            source_id: Arc::from(source_id),
            budget: Budget::new(SOURCE_BUDGET),
            routes,
            dead_letters,
            dedup: Dedup::new(dedup.window, dedup.capacity),
            transform: Transform::default(),
            suppression: Arc::default(),
            stats: SupervisorStats::default(),
        }
    }

    /// The budget its senders take from (shared with the consumer's handle).
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
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
                permit: Permit::none(),
            });
        }
        message.ack.done();
        self.stats.delivered += 1;
        Outcome::Delivered {
            destinations: batches.len(),
        }
    }

    /// Admits a batch of records and hands each target its events in one message,
    /// with one permit of the target's budget per event. Hands over without waiting
    /// where there is room; a target without room makes the batch, and so this source,
    /// wait for it: that wait is the source's backpressure. The batch's own permit
    /// (room in this source's budget) is released when every target has its events.
    fn dispatch(&mut self, messages: Vec<Inbound>, permit: Permit) -> ResponseActFuture<Self, Vec<Outcome>> {
        let mut batches: Vec<Vec<Routed>> = self.routes.iter().map(|_| Vec::with_capacity(messages.len())).collect();
        let mut letters = Vec::new();
        let outcomes: Vec<Outcome> = messages
            .into_iter()
            .map(|message| self.admit(message, &mut batches, &mut letters))
            .collect();
        let mut waiting: Vec<Waiting> = Vec::new();
        for (route, mut batch) in self.routes.iter().zip(batches) {
            if batch.is_empty() {
                continue;
            }
            match route.budget.try_take(batch.len()) {
                Some(room) => {
                    if let Some(full) = hand_over(&self.source_id, route, &mut batch, room) {
                        waiting.push(Waiting::Mailbox(route.clone(), full));
                    }
                }
                None => waiting.push(Waiting::Room(route.clone(), batch)),
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
            for item in waiting {
                match item {
                    Waiting::Mailbox(route, full) => send_waiting(&source_id, &route, full).await,
                    // In parts no larger than the target's budget, each sent before the
                    // next is asked for (the target can only make room for events it has).
                    Waiting::Room(route, mut batch) => {
                        while !batch.is_empty() {
                            let room = route.budget.take(batch.len()).await;
                            if let Some(full) = hand_over(&source_id, &route, &mut batch, room) {
                                send_waiting(&source_id, &route, full).await;
                            }
                        }
                    }
                }
            }
            drop(permit);
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

/// Events a target could not take at once: no room in its budget yet, or (a burst of
/// small batches) a full mailbox.
enum Waiting {
    Room(Route, Vec<Routed>),
    Mailbox(Route, RoutedBatch),
}

/// Gives the first `room.count()` events of `batch` their permits and sends them (all
/// of them for an unbounded target). Returns them if the target's mailbox was full.
fn hand_over(source_id: &str, route: &Route, batch: &mut Vec<Routed>, mut room: Permit) -> Option<RoutedBatch> {
    let count = if route.budget.capacity() == usize::MAX {
        batch.len()
    } else {
        room.count().clamp(1, batch.len().max(1))
    };
    let mut part: Vec<Routed> = batch.drain(..count).collect();
    for routed in &mut part {
        routed.permit = room.split_one();
    }
    match route.recipient.try_send(RoutedBatch(part)) {
        Ok(()) => None,
        Err(SendError::Full(part)) => Some(part),
        Err(SendError::Closed(_)) => {
            // The shares went down with the mailbox: the records are redelivered.
            tracing::error!(source_id, destination_id = %route.destination_id, "destination actor unavailable");
            None
        }
    }
}

/// Waits for a full mailbox to take `batch`.
async fn send_waiting(source_id: &str, route: &Route, batch: RoutedBatch) {
    if let Err(error) = route.recipient.send(batch).await {
        tracing::error!(source_id, destination_id = %route.destination_id, %error, "destination actor unavailable");
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
        let response = self.dispatch(vec![message], Permit::none());
        AtomicResponse::new(Box::pin(
            response.map(|mut outcomes, _, _| outcomes.pop().unwrap_or(Outcome::Filtered)),
        ))
    }
}

impl Handler<InboundBatch> for SourceSupervisor {
    type Result = AtomicResponse<Self, Vec<Outcome>>;

    fn handle(&mut self, batch: InboundBatch, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.dispatch(batch.records, batch.permit))
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
        stats.queued = self.budget.held();
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Ack;
    use crate::test_support::{Collect, Count};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;
    use switchyard_schemas::record::RecordHeaders;

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
            budget: Budget::new(10),
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
        let budget = Budget::new(1);
        let spent = budget.take(1).await;
        let route = Route {
            destination_id: "slow".into(),
            recipient: destination.recipient(),
            budget: budget.clone(),
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
        drop(spent);
        let stats = actix::clock::timeout(Duration::from_secs(5), supervisor.send(GetStats)).await;
        assert!(stats.is_ok(), "the supervisor moves on once there is room");
        assert_eq!(*seen.lock().expect("not poisoned"), vec!["held".to_string()]);
        assert_eq!(completed.0.load(Ordering::SeqCst), 1);
    }
}
