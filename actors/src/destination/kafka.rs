//! The Kafka destination: events written to another topic (on this cluster or another)
//! in the ingest record format, with the destination's own credentials.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use switchyard_schemas::{Event, RecordHeaders, record_key};

use super::config::KafkaDestinationConfig;
use super::webhook::DeliveryError;

#[derive(Clone)]
pub struct KafkaClient {
    producer: FutureProducer,
    topic: Arc<str>,
    batch_max_events: usize,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    pub fn new(config: &KafkaDestinationConfig) -> Result<Self, KafkaError> {
        let client = switchyard_kafka::durable_producer(
            &config.brokers,
            config.timeout_ms,
            &[("linger.ms", "5")],
            &config.options,
        );
        Ok(KafkaClient {
            producer: client.create()?,
            topic: Arc::from(config.topic.as_str()),
            batch_max_events: config.batch_max_events,
        })
    }

    pub fn batch_max_events(&self) -> usize {
        self.batch_max_events
    }

    /// Writes the batch and waits for every acknowledgement. A failure fails the batch,
    /// which is retried whole: records written before it are written again (at-least-once).
    pub async fn send(self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> Result<(), DeliveryError> {
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let value = serde_json::to_vec(event.as_ref())
                .map_err(|error| DeliveryError::permanent(format!("event could not be encoded: {error}")))?;
            let key = record_key(&source_id, event);
            let record_headers = RecordHeaders::new(&source_id, event, None);
            let pairs = record_headers.pairs();
            let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
            for (name, value) in pairs {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::to(&self.topic).key(&key).payload(&value).headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => return Err(classify(error)),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(classify(error)),
                Err(_) => return Err(DeliveryError::retryable("the producer shut down".into())),
            }
        }
        Ok(())
    }
}

/// Refusals about the record itself or our rights won't change on retry; the rest
/// (unreachable cluster, timeouts, leader changes, a full queue) will.
fn classify(error: KafkaError) -> DeliveryError {
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    );
    let reason = format!("kafka: {error}");
    let mut classified = if permanent {
        DeliveryError::permanent(reason)
    } else {
        DeliveryError::retryable(reason)
    };
    if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) {
        classified.retry_after = Some(Duration::from_millis(100));
    }
    classified
}
