//! The dead-letter writer: events given up on go to the dead-letter topic with the
//! reason in the headers, and only once Kafka has them is their share of the record
//! done. The producer retries without a deadline, so nothing is dropped on the way.

use actix::prelude::*;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use switchyard_actors::DeadLetter;
use switchyard_schemas::config::KafkaConfig;

pub mod header {
    pub const SOURCE_ID: &str = "switchyard-source-id";
    pub const DESTINATION_ID: &str = "switchyard-destination-id";
    pub const STAGE: &str = "switchyard-dead-letter-stage";
    pub const REASON: &str = "switchyard-dead-letter-reason";
    pub const ATTEMPTS: &str = "switchyard-dead-letter-attempts";
    pub const MESSAGE_ID: &str = "switchyard-message-id";
}

pub struct DeadLetterWriter {
    producer: FutureProducer,
    topic: String,
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
        })
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
            let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
            for (key, value) in pairs {
                if let Some(value) = value {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    });
                }
            }
            let key = format!(
                "{}/{}",
                letter.source_id,
                letter.destination_id.as_deref().unwrap_or("-")
            );
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&letter.value)
                .headers(headers);
            match producer.send(record, Timeout::Never).await {
                Ok(_) => letter.ack.done(),
                Err((error, _)) => {
                    tracing::error!(%error, source_id = %letter.source_id, "dead-letter write failed; the record will be redelivered");
                }
            }
        })
    }
}
