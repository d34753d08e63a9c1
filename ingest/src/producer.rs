//! Writing records to the ingest topic and waiting until Kafka has all of them.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use switchyard_config::KafkaConfig;
use switchyard_schemas::RecordHeaders;

/// How many records may wait in the producer's queue. A request that would go past it
/// is answered 503 at once instead of queueing without bound.
pub const QUEUE_CAPACITY: usize = 200_000;

/// One record ready to send.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: RecordHeaders,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProduceError {
    #[error("the event queue is full ({queued} records waiting for Kafka); retry shortly")]
    QueueFull { queued: usize },
    #[error("Kafka did not acknowledge the events: {0}; retry shortly")]
    Broker(String),
}

impl ProduceError {
    pub fn code(&self) -> &'static str {
        match self {
            ProduceError::QueueFull { .. } => "queue_full",
            ProduceError::Broker(_) => "broker_unavailable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not create the Kafka producer: {0}")]
pub struct SinkSetupError(#[from] KafkaError);

/// The ingest topic's producer: idempotent, acks=all.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<Self, SinkSetupError> {
        let capacity = QUEUE_CAPACITY.to_string();
        let tuning = [
            ("linger.ms", "2"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", capacity.as_str()),
            ("queue.buffering.max.kbytes", "1048576"),
        ];
        let client =
            switchyard_kafka::durable_producer(&config.brokers, config.delivery_timeout_ms, &tuning, &config.options);
        Ok(KafkaSink {
            producer: client.create()?,
            topic: config.topic.clone(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends every record and returns once Kafka has acknowledged all of them, or with
    /// the first failure. Records already handed to Kafka before a failure may still
    /// land; the client's retry then repeats them with the same messageId and the
    /// router's dedup drops the second copy.
    pub async fn send_all(&self, records: &[OutRecord]) -> Result<(), ProduceError> {
        let queued = usize::try_from(self.producer.in_flight_count()).unwrap_or(0);
        if queued + records.len() > QUEUE_CAPACITY {
            return Err(ProduceError::QueueFull { queued });
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let pairs = record.headers.pairs();
            let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
            for (name, value) in pairs {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let future_record = FutureRecord::to(&self.topic)
                .key(record.key.as_bytes())
                .payload(&record.value)
                .headers(headers);
            match self.producer.send_result(future_record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(ProduceError::QueueFull {
                        queued: queued + deliveries.len(),
                    });
                }
                Err((error, _)) => return Err(ProduceError::Broker(error.to_string())),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(ProduceError::Broker(error.to_string())),
                Err(_) => return Err(ProduceError::Broker("the producer shut down".into())),
            }
        }
        Ok(())
    }

    /// Writes one record to another topic (the dead-letter topic) with the given headers
    /// and waits for Kafka to have it.
    pub async fn send_dead_letter(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(&str, String)],
    ) -> Result<(), ProduceError> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, text) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(text.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(value)
            .headers(owned);
        match self.producer.send_result(record) {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(ProduceError::Broker(error.to_string())),
                Err(_) => Err(ProduceError::Broker("the producer shut down".into())),
            },
            Err((error, _)) => Err(ProduceError::Broker(error.to_string())),
        }
    }

    /// Waits for queued records to reach Kafka, for a graceful shutdown.
    /// Records handed to librdkafka and not yet acknowledged by the broker.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer
            .flush(timeout)
            .map_err(|error| ProduceError::Broker(error.to_string()))
    }
}
