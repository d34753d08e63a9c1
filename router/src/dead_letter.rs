//! The writer of the router's own topics: events given up on go to the dead-letter
//! topic with the reason in the headers, and events a full destination parks go to the
//! retry topic with their retry state. Only once Kafka has them is their share of the
//! record done. The producer retries without a deadline, so nothing is dropped on the
//! way.

use actix::prelude::*;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_actors::{DeadLetter, Park};
use switchyard_config::KafkaConfig;

pub mod header {
    pub use switchyard_schemas::record::dead_letter::{ATTEMPTS, DESTINATION_ID, REASON, STAGE};
    pub use switchyard_schemas::record::header::{MESSAGE_ID, SOURCE_ID};
    pub const RETRY_ATTEMPTS: &str = "switchyard-retry-attempts";
    pub const RETRY_PARKS: &str = "switchyard-retry-parks";
    pub const RETRY_FIRST_SEEN_MS: &str = "switchyard-retry-first-seen-ms";
    pub const RETRY_NOT_BEFORE_MS: &str = "switchyard-retry-not-before-ms";
    pub const RETRY_LAST_ERROR: &str = "switchyard-retry-last-error";
}

pub struct DeadLetterWriter {
    producer: FutureProducer,
    topic: String,
    retry_topic: Option<String>,
}

impl std::fmt::Debug for DeadLetterWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterWriter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterWriter {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self, KafkaError> {
        // A message timeout of 0: librdkafka keeps retrying until the broker takes it.
        let client = switchyard_kafka::durable_producer(&kafka.brokers, 0, &[], &kafka.options);
        Ok(DeadLetterWriter {
            producer: client.create()?,
            topic: topic.to_string(),
            retry_topic: None,
        })
    }

    /// Also writes parked events, to `topic`.
    pub fn with_retry_topic(mut self, topic: &str) -> Self {
        self.retry_topic = Some(topic.to_string());
        self
    }
}

impl Actor for DeadLetterWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<DeadLetter> for DeadLetterWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, letter: DeadLetter, _ctx: &mut Self::Context) -> Self::Result {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            let attempts = letter.attempts.to_string();
            let pairs = [
                (header::SOURCE_ID, Some(letter.source_id.as_str())),
                (header::DESTINATION_ID, letter.destination_id.as_deref()),
                (header::STAGE, Some(letter.stage.as_str())),
                (header::REASON, Some(letter.reason.as_str())),
                (header::ATTEMPTS, Some(attempts.as_str())),
                (header::MESSAGE_ID, letter.message_id.as_deref()),
            ];
            let key = format!(
                "{}/{}",
                letter.source_id,
                letter.destination_id.as_deref().unwrap_or("-")
            );
            match write(&producer, &topic, &key, &pairs, &letter.value).await {
                Ok(()) => letter.ack.done(),
                Err(error) => {
                    tracing::error!(%error, source_id = %letter.source_id, "dead-letter write failed; the record will be redelivered");
                }
            }
        })
    }
}

impl Handler<Park> for DeadLetterWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, park: Park, _ctx: &mut Self::Context) -> Self::Result {
        let producer = self.producer.clone();
        let Some(topic) = self.retry_topic.clone() else {
            tracing::error!(source_id = %park.source_id, "no retry topic; the record will be redelivered");
            return Box::pin(async {});
        };
        Box::pin(async move {
            let (attempts, parks) = (park.state.attempts.to_string(), park.state.parks.to_string());
            let first_seen = millis(park.state.first_seen).to_string();
            let not_before = millis(park.not_before).to_string();
            let pairs = [
                (header::SOURCE_ID, Some(park.source_id.as_str())),
                (header::DESTINATION_ID, Some(park.destination_id.as_str())),
                (header::MESSAGE_ID, park.message_id.as_deref()),
                (header::RETRY_ATTEMPTS, Some(attempts.as_str())),
                (header::RETRY_PARKS, Some(parks.as_str())),
                (header::RETRY_FIRST_SEEN_MS, Some(first_seen.as_str())),
                (header::RETRY_NOT_BEFORE_MS, Some(not_before.as_str())),
                (header::RETRY_LAST_ERROR, park.state.last_error.as_deref()),
            ];
            // Keyed by event, so a destination's parked events spread over every
            // partition of the retry topic (and every router reading it): one partition
            // per destination held all of an outage's parks, and on the embedded broker
            // outgrew its 100,000 records (measured: 78,309 trimmed before they were read,
            // reported as skipped). Parking keeps no order anyway (not with per_user).
            let key = format!(
                "{}/{}/{}",
                park.source_id,
                park.destination_id,
                park.message_id.as_deref().unwrap_or_default()
            );
            match write(&producer, &topic, &key, &pairs, &park.value).await {
                Ok(()) => park.ack.done(),
                Err(error) => {
                    tracing::error!(%error, source_id = %park.source_id, "retry topic write failed; the record will be redelivered");
                }
            }
        })
    }
}

async fn write(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    pairs: &[(&str, Option<&str>)],
    value: &[u8],
) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
    for (key, value) in pairs {
        if let Some(value) = value {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
    }
    let record = FutureRecord::to(topic).key(key).payload(value).headers(headers);
    producer
        .send(record, Timeout::Never)
        .await
        .map(drop)
        .map_err(|(error, _)| error)
}

/// Milliseconds since the Unix epoch, as the retry headers carry times.
pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
