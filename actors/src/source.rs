//! `SourceSupervisor`: the entry point of one source's events into the actor system.

use std::sync::Arc;

use actix::prelude::*;
use futures::future::join_all;
use switchyard_schemas::record::{RecordError, RecordHeaders, decode_value};
use switchyard_schemas::{Event, validate};

/// A record of this source as read from Kafka.
#[derive(Debug, Message)]
#[rtype(result = "Outcome")]
pub struct Inbound {
    pub headers: RecordHeaders,
    pub value: Vec<u8>,
}

/// A decoded, validated event on its way to one destination.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Routed {
    pub source_id: Arc<str>,
    pub event: Arc<Event>,
}

/// What became of one inbound record; the consumer commits past it either way, and
/// (from the routing work on) sends rejections to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { destinations: usize },
    Rejected { reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    pub received: u64,
    pub delivered: u64,
    pub rejected: u64,
}

#[derive(Debug, Message)]
#[rtype(result = "SupervisorStats")]
pub struct GetStats;

pub struct SourceSupervisor {
    source_id: Arc<str>,
    destinations: Vec<Recipient<Routed>>,
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

/// Bounded, so a slow consumer of this source pushes back on the Kafka poll loop.
const MAILBOX_CAPACITY: usize = 1024;

impl SourceSupervisor {
    pub fn new(source_id: &str, destinations: Vec<Recipient<Routed>>) -> Self {
        SourceSupervisor {
            source_id: Arc::from(source_id),
            destinations,
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
        let event = decode_value(&message.value).map_err(|error: RecordError| error.to_string())?;
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
    type Result = ResponseActFuture<Self, Outcome>;

    fn handle(&mut self, message: Inbound, _ctx: &mut Self::Context) -> Self::Result {
        self.stats.received += 1;
        let event = match self.check(&message) {
            Ok(event) => Arc::new(event),
            Err(reason) => {
                self.stats.rejected += 1;
                tracing::warn!(source_id = %self.source_id, %reason, "rejected record");
                return Box::pin(fut::ready(Outcome::Rejected { reason }));
            }
        };
        let routed = Routed {
            source_id: self.source_id.clone(),
            event,
        };
        let sends: Vec<_> = self
            .destinations
            .iter()
            .map(|d| d.send(routed.clone()))
            .collect();
        Box::pin(
            async move {
                join_all(sends)
                    .await
                    .iter()
                    .filter(|sent| sent.is_ok())
                    .count()
            }
            .into_actor(self)
            .map(|destinations, actor, _| {
                actor.stats.delivered += 1;
                Outcome::Delivered { destinations }
            }),
        )
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
    use std::sync::Mutex;

    struct Collect(Arc<Mutex<Vec<String>>>);
    impl Actor for Collect {
        type Context = Context<Self>;
    }
    impl Handler<Routed> for Collect {
        type Result = ();
        fn handle(&mut self, message: Routed, _: &mut Self::Context) {
            let id = message.event.message_id().unwrap_or_default().to_string();
            self.0.lock().expect("not poisoned").push(id);
        }
    }

    fn inbound(source: &str, value: serde_json::Value) -> Inbound {
        let event: Event = serde_json::from_value(value.clone()).expect("sample parses");
        Inbound {
            headers: RecordHeaders::new(source, &event, None),
            value: serde_json::to_vec(&value).expect("serialises"),
        }
    }

    #[actix::test]
    async fn valid_records_reach_every_destination_and_invalid_ones_are_rejected_with_a_reason() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let first = Collect(seen.clone()).start().recipient();
        let second = Collect(seen.clone()).start().recipient();
        let supervisor = SourceSupervisor::new("web", vec![first, second]).start();

        let good = inbound(
            "web",
            serde_json::json!({"type": "track", "userId": "u", "event": "e", "messageId": "m1"}),
        );
        assert_eq!(
            supervisor.send(good).await.expect("alive"),
            Outcome::Delivered { destinations: 2 }
        );

        let no_identity = inbound(
            "web",
            serde_json::json!({"type": "identify", "anonymousId": "a", "messageId": "m2"}),
        );
        let mut broken = no_identity;
        broken.value = br#"{"type": "identify", "traits": {}}"#.to_vec();
        match supervisor.send(broken).await.expect("alive") {
            Outcome::Rejected { reason } => {
                assert!(reason.contains("userId or an anonymousId"), "{reason}")
            }
            other => panic!("expected a rejection, got {other:?}"),
        }

        let stats = supervisor.send(GetStats).await.expect("alive");
        assert_eq!(
            stats,
            SupervisorStats {
                received: 2,
                delivered: 1,
                rejected: 1
            }
        );
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            vec!["m1".to_string(), "m1".to_string()]
        );
    }
}
