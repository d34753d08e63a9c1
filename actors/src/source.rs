//! `SourceSupervisor`: the entry point of one source's events into the actor system.
//! It checks each record again (external producers skip ingest), drops repeats by
//! messageId, and fans the event out to every destination of the source, each with
//! its own share of the record's [`Ack`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use switchyard_schemas::record::{RecordHeaders, decode_value};
use switchyard_schemas::{Event, validate};

use crate::ack::Ack;
use crate::dead_letter::{DeadLetter, Stage};
use crate::dedup::Dedup;

/// A record of this source as read from Kafka.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Inbound {
    pub headers: RecordHeaders,
    pub value: Vec<u8>,
    pub ack: Ack,
}

/// A decoded, validated event on its way to one destination, with that destination's
/// share of the record.
#[derive(Debug, Message)]
#[rtype(result = "Accepted")]
pub struct Routed {
    pub source_id: Arc<str>,
    pub event: Arc<Event>,
    pub ack: Ack,
}

/// A destination's answer: taken, or its buffer is full and the event comes back.
#[derive(Debug, MessageResponse)]
pub enum Accepted {
    Yes,
    Full(Routed),
}

/// What became of one inbound record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { destinations: usize },
    Duplicate,
    Rejected { reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    pub received: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

#[derive(Debug, Message)]
#[rtype(result = "SupervisorStats")]
pub struct GetStats;

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
    destinations: Vec<(String, Recipient<Routed>)>,
    dead_letters: Recipient<DeadLetter>,
    dedup: Dedup,
    stats: SupervisorStats,
}

impl std::fmt::Debug for SourceSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSupervisor")
            .field("source_id", &self.source_id)
            .field("destinations", &self.destinations.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Bounded, so a slow source pushes back on the Kafka poll loop.
const MAILBOX_CAPACITY: usize = 1024;
/// How long to wait before offering an event again to a destination whose buffer is full.
const FULL_RETRY: Duration = Duration::from_millis(50);

impl SourceSupervisor {
    pub fn new(
        source_id: &str,
        destinations: Vec<(String, Recipient<Routed>)>,
        dead_letters: Recipient<DeadLetter>,
        dedup: DedupSettings,
    ) -> Self {
        SourceSupervisor {
            source_id: Arc::from(source_id),
            destinations,
            dead_letters,
            dedup: Dedup::new(dedup.window, dedup.capacity),
            stats: SupervisorStats::default(),
        }
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
        tracing::info!(source_id = %self.source_id, destinations = self.destinations.len(), "source supervisor started");
    }
}

impl Handler<Inbound> for SourceSupervisor {
    /// Atomic: one record at a time, so records reach each destination in order and a
    /// full destination holds the source back instead of piling up futures.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, message: Inbound, _ctx: &mut Self::Context) -> Self::Result {
        self.stats.received += 1;
        let event = match self.check(&message) {
            Ok(event) => event,
            Err(reason) => {
                self.stats.rejected += 1;
                tracing::warn!(source_id = %self.source_id, %reason, "record rejected");
                let letter = DeadLetter {
                    source_id: self.source_id.to_string(),
                    destination_id: None,
                    stage: Stage::Validate,
                    reason: reason.clone(),
                    attempts: 0,
                    message_id: message.headers.message_id.clone(),
                    value: message.value,
                    ack: message.ack,
                };
                let send = self.dead_letters.send(letter);
                return AtomicResponse::new(Box::pin(
                    async move {
                        if let Err(error) = send.await {
                            tracing::error!(%error, "dead-letter writer unavailable; the record will be redelivered");
                        }
                    }
                    .into_actor(self)
                    .map(move |_, _, _| Outcome::Rejected { reason }),
                ));
            }
        };
        if let Some(id) = event.message_id()
            && !self.dedup.first_time(id, Instant::now())
        {
            self.stats.duplicates += 1;
            message.ack.done();
            return AtomicResponse::new(Box::pin(fut::ready(Outcome::Duplicate)));
        }
        let event = Arc::new(event);
        let deliveries: Vec<(Recipient<Routed>, Routed)> = self
            .destinations
            .iter()
            .map(|(_, recipient)| {
                let routed = Routed {
                    source_id: self.source_id.clone(),
                    event: event.clone(),
                    ack: message.ack.share(),
                };
                (recipient.clone(), routed)
            })
            .collect();
        message.ack.done();
        let source_id = self.source_id.clone();
        let fan_out = async move {
            let mut taken = 0;
            for (recipient, mut routed) in deliveries {
                loop {
                    match recipient.send(routed).await {
                        Ok(Accepted::Yes) => {
                            taken += 1;
                            break;
                        }
                        Ok(Accepted::Full(back)) => {
                            routed = back;
                            actix::clock::sleep(FULL_RETRY).await;
                        }
                        Err(error) => {
                            // The share went down with the mailbox: the offset stays
                            // uncommitted and the record is redelivered.
                            tracing::error!(%source_id, %error, "destination actor unavailable");
                            break;
                        }
                    }
                }
            }
            taken
        };
        AtomicResponse::new(Box::pin(fan_out.into_actor(self).map(|destinations, actor, _| {
            actor.stats.delivered += 1;
            Outcome::Delivered { destinations }
        })))
    }
}

impl Handler<GetStats> for SourceSupervisor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Completion;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Collect(Arc<Mutex<Vec<String>>>);
    impl Actor for Collect {
        type Context = Context<Self>;
    }
    impl Handler<Routed> for Collect {
        type Result = MessageResult<Routed>;
        fn handle(&mut self, message: Routed, _: &mut Self::Context) -> Self::Result {
            let id = message.event.message_id().unwrap_or_default().to_string();
            self.0.lock().expect("not poisoned").push(id);
            message.ack.done();
            MessageResult(Accepted::Yes)
        }
    }
    impl Handler<DeadLetter> for Collect {
        type Result = ();
        fn handle(&mut self, message: DeadLetter, _: &mut Self::Context) {
            self.0
                .lock()
                .expect("not poisoned")
                .push(format!("dead: {}", message.reason));
            message.ack.done();
        }
    }

    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>);
    impl Completion for Count {
        fn complete(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

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
        let destinations = vec![
            ("a".to_string(), first.recipient()),
            ("b".to_string(), second.recipient()),
        ];
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

        let stats = supervisor.send(GetStats).await.expect("alive");
        assert_eq!(
            stats,
            SupervisorStats {
                received: 3,
                delivered: 1,
                duplicates: 1,
                rejected: 1
            }
        );
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(seen.iter().filter(|s| *s == "m1").count(), 2, "{seen:?}");
        assert!(seen.iter().any(|s| s.starts_with("dead: identify needs")), "{seen:?}");
        assert_eq!(
            completed.0.load(Ordering::SeqCst),
            3,
            "every record completes exactly once"
        );
    }
}
